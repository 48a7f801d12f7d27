namespace Alora.Tokenization;

/// <summary>Adds the special tokens a model expects around an encoded text (tokenizers' post_processor).</summary>
internal abstract class PostProcessor
{
    /// <summary>Returns the ids with special tokens added (single sequence).</summary>
    public abstract List<int> Process(List<int> ids);
}

/// <summary>Leaves ids as they are (ByteLevel's post-processor only adjusts offsets).</summary>
internal sealed class IdentityPostProcessor : PostProcessor
{
    public override List<int> Process(List<int> ids) => ids;
}

/// <summary>
/// A template such as "&lt;s&gt; $A": a list of items, each the input sequence or the ids of a special token.
/// </summary>
internal sealed class TemplatePostProcessor(IReadOnlyList<int[]?> single) : PostProcessor
{
    /// <summary>Items of the single-sequence template: null for the sequence, else the ids to insert.</summary>
    public IReadOnlyList<int[]?> Single { get; } = single;

    public override List<int> Process(List<int> ids)
    {
        var output = new List<int>(ids.Count + 4);
        foreach (var item in Single)
        {
            if (item == null) output.AddRange(ids);
            else output.AddRange(item);
        }
        return output;
    }
}

/// <summary>Applies post-processors one after the other.</summary>
internal sealed class SequencePostProcessor(IReadOnlyList<PostProcessor> steps) : PostProcessor
{
    public IReadOnlyList<PostProcessor> Steps { get; } = steps;

    public override List<int> Process(List<int> ids)
    {
        foreach (var step in Steps) ids = step.Process(ids);
        return ids;
    }
}
