using Alora.Models;

namespace Alora.Inference;

/// <summary>What to do when an aLoRA's invocation sequence does not occur in the prompt.</summary>
public enum MissingInvocationPolicy
{
    /// <summary>Refuse the request (the library default: a silent base-model answer hides a prompt bug).</summary>
    Error,
    /// <summary>Run the base model for the whole request, as PEFT does.</summary>
    Base,
}

public sealed class InvocationNotFoundException(string message) : Exception(message);

/// <summary>
/// aLoRA activation as PEFT ≥ 0.18 computes it: s = start of the last occurrence (overlaps allowed) of the
/// invocation ids in the full prompt ids; rows at positions ≥ s are adapted, and so is every generated token.
/// PEFT keeps this as an offset from the end, len − s, so a forward over only an uncached tail stays right;
/// Alora keeps the absolute position s, which is the same thing.
/// </summary>
public static class AdapterActivation
{
    /// <summary>Position from which the adapter applies: 0 for a LoRA; s (+ shift) for an aLoRA; null when not found.</summary>
    public static int? FindStart(ReadOnlySpan<int> promptIds, ForwardAdapter adapter)
        => Start(promptIds, adapter.InvocationTokens, adapter.ActivationShift);

    /// <summary>
    /// The activation rule, defined once for inference and training: 0 without invocation ids (a LoRA); else the
    /// start of the invocation's last occurrence plus the adapter's shift (1 for legacy IBM aLoRAs); null when absent.
    /// </summary>
    public static int? Start(ReadOnlySpan<int> ids, int[]? invocationTokens, int activationShift)
    {
        if (invocationTokens is null) return 0;
        int s = LastOccurrence(ids, invocationTokens);
        return s < 0 ? null : s + activationShift;
    }

    /// <summary>PEFT's alora offset: len(ids) − s, or null when the invocation does not occur.</summary>
    public static int? Offset(ReadOnlySpan<int> ids, ReadOnlySpan<int> invocation)
    {
        int s = LastOccurrence(ids, invocation);
        return s < 0 ? null : ids.Length - s;
    }

    /// <summary>Start of the last occurrence (overlaps allowed) of the invocation ids, or -1: one definition, <see cref="Tokenization.InvocationTokens.FindLast"/>.</summary>
    public static int LastOccurrence(ReadOnlySpan<int> ids, ReadOnlySpan<int> invocation) => Tokenization.InvocationTokens.FindLast(ids, invocation);

    /// <summary>The start position to use, applying the policy; <see cref="int.MaxValue"/> means "never adapted".</summary>
    public static int Resolve(ReadOnlySpan<int> promptIds, ForwardAdapter? adapter, MissingInvocationPolicy policy)
    {
        if (adapter is null) return int.MaxValue;
        if (FindStart(promptIds, adapter) is int start) return start;
        if (policy == MissingInvocationPolicy.Base) return int.MaxValue;
        throw new InvocationNotFoundException(
            $"adapter '{adapter.Name}': its invocation sequence [{string.Join(", ", adapter.InvocationTokens!)}] does not occur in the prompt's {promptIds.Length} token ids, so the aLoRA would never activate; put the invocation in the prompt, or opt in to base-model behaviour (MissingInvocationPolicy.Base)");
    }
}
