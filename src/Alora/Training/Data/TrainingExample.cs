namespace Alora.Training.Data;

/// <summary>
/// One tokenized example. Labels are the token ids to predict, −100 where no loss is taken (Hugging Face's
/// causal-LM convention: logits at t predict labels[t + 1]). <see cref="ActivationStart"/> is the aLoRA's
/// first adapted position (the start of the last invocation occurrence), or null for a plain LoRA.
/// </summary>
public sealed record TrainingExample(int[] InputIds, int[] Labels, int? ActivationStart, int LineNumber)
{
    public const int IgnoreIndex = -100;
    public int LossTokenCount => Labels.Count(l => l != IgnoreIndex);
}

/// <summary>A data file line that cannot be used: the message names the file and line.</summary>
public sealed class TrainingDataException(string message) : Exception(message);
