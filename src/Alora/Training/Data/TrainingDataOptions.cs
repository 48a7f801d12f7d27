namespace Alora.Training.Data;

public sealed record TrainingDataOptions
{
    /// <summary>Examples are cut to this many tokens (from the right, as the tokenizer's truncation does).</summary>
    public int CutoffLength { get; init; } = 512;
    /// <summary>
    /// The aLoRA invocation ids. Each example must contain them; the loss is on the tokens after their last
    /// occurrence. Null for a plain LoRA, which learns the completion (the last message, or `completion`/`output`).
    /// </summary>
    public int[]? InvocationTokens { get; init; }
    /// <summary>Positions after the invocation's start at which the adapter applies: the adapter's own shift (1 for legacy IBM aLoRAs).</summary>
    public int ActivationShift { get; init; }
    /// <summary>Take the loss on every token (still not on padding), not only the response.</summary>
    public bool TrainOnAllTokens { get; init; }
    /// <summary>The chat role of the intrinsic's answer in IBM's {"messages": {"chat": […]}} data (e.g. "certainty"); informational.</summary>
    public DateTimeOffset? TemplateNow { get; init; }
}
