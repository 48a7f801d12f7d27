using System.Diagnostics;
using System.Runtime.CompilerServices;
using Alora.Models;

namespace Alora.Inference;

/// <summary>Turns token ids into text incrementally, never splitting a UTF-8 character.</summary>
public interface ITokenTextStream
{
    /// <summary>Ids whose text is already out (the prompt's end): what follows decodes as their continuation.</summary>
    void Prime(ReadOnlySpan<int> contextIds);

    /// <summary>The text that became complete with this token (may be empty).</summary>
    string Append(int tokenId);
    /// <summary>Whatever is still held back at the end.</summary>
    string Flush();
}

public sealed record GenerationRequest
{
    public required int[] PromptIds { get; init; }
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>Upper bound on generated tokens.</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>Keep going past end-of-sequence tokens (as llama.cpp's --ignore-eos).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>Generation stops when the text contains one of these; the stop string itself is not returned.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>A LoRA (adapts every row) or an aLoRA (adapts from its invocation on); null for the base model.</summary>
    public ForwardAdapter? Adapter { get; init; }
    /// <summary>What an aLoRA does when its invocation is absent from the prompt.</summary>
    public MissingInvocationPolicy OnMissingInvocation { get; init; } = MissingInvocationPolicy.Error;
}

public enum FinishReason { Stop, Length }

public sealed record GenerationStats(int PromptTokens, int ReusedPromptTokens, int GeneratedTokens, double PrefillSeconds, double DecodeSeconds)
{
    /// <summary>Prompt tokens computed (not reused) per second of prefill.</summary>
    public double PrefillTokensPerSecond => PrefillSeconds > 0 ? (PromptTokens - ReusedPromptTokens) / PrefillSeconds : 0;
    /// <summary>Tokens per second of the decode loop (every token after the first).</summary>
    public double DecodeTokensPerSecond => DecodeSeconds > 0 ? Math.Max(0, GeneratedTokens - 1) / DecodeSeconds : 0;
}

/// <summary>One streamed step: a token (or -1 on the final update when no token came), its text, and on the last update the finish reason and stats.</summary>
public sealed record GenerationUpdate(int TokenId, string Text, FinishReason? Finish = null, GenerationStats? Stats = null);

/// <summary>
/// Prefill then decode on one sequence. The sequence is a cache handle: if it already holds a prefix of the
/// prompt computed the way this request computes it (same tokens; the base model before the adapter's
/// activation start, the same adapter after), only the rest is computed. Other positions are dropped first.
/// So a base conversation's cache serves an aLoRA call up to its invocation, and the reverse.
/// </summary>
public sealed class Generator(DecoderModel model, IReadOnlyCollection<int> eosTokenIds, Func<ITokenTextStream>? textStreamFactory = null)
{
    public DecoderModel Model { get; } = model;

    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(GenerationRequest request, KvSequence sequence,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        if (request.PromptIds.Length == 0) throw new ArgumentException("the prompt has no tokens", nameof(request));
        ArgumentOutOfRangeException.ThrowIfNegative(request.MaxTokens);
        await Task.Yield();

        int adapterStart = AdapterActivation.Resolve(request.PromptIds, request.Adapter, request.OnMissingInvocation);
        var adapter = adapterStart == int.MaxValue ? null : request.Adapter;
        // Reuse the cached prefix; always recompute at least the last prompt token to get its logits.
        int reused = sequence.ReusablePrefix(request.PromptIds, adapter, adapterStart);
        reused = Math.Min(reused, request.PromptIds.Length - 1);
        if (sequence.Length > reused) sequence.Truncate(reused);

        sequence.Reserve(request.PromptIds.Length + request.MaxTokens);
        var sampler = new Sampler(Model.VocabSize, request.Sampling);
        var logits = new float[Model.VocabSize];
        var history = new List<int>(request.PromptIds.Length + request.MaxTokens);
        history.AddRange(request.PromptIds);
        var text = textStreamFactory?.Invoke();
        text?.Prime(request.PromptIds.AsSpan(Math.Max(0, request.PromptIds.Length - 4)));
        var stops = new StopStringMatcher(request.StopStrings);
        var eos = new HashSet<int>(eosTokenIds);

        var clock = Stopwatch.StartNew();
        Model.Forward([new SequenceChunk(sequence, request.PromptIds.AsMemory(reused), LogitRows.Last, adapter, adapterStart)], logits);
        double prefillSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();

        int generated = 0;
        var oneToken = new int[1];
        SequenceChunk[] decodeStep = [new SequenceChunk(sequence, oneToken, LogitRows.Last, adapter, adapterStart)];   // reused every step
        FinishReason finish = FinishReason.Length;
        while (generated < request.MaxTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int token = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(history));
            if (!request.IgnoreEos && eos.Contains(token)) { finish = FinishReason.Stop; break; }
            generated++;
            history.Add(token);
            string piece = text?.Append(token) ?? "";
            var (emit, stopped) = stops.Push(piece);
            if (stopped)
            {
                finish = FinishReason.Stop;
                if (emit.Length > 0) yield return new GenerationUpdate(token, emit);
                break;
            }
            bool last = generated == request.MaxTokens;
            if (!last)
            {
                // Feed the token now, so the next update's logits are ready (the KV of the final token is never needed).
                oneToken[0] = token;
                Model.Forward(decodeStep, logits);
            }
            yield return new GenerationUpdate(token, emit);
        }
        string tail = finish == FinishReason.Stop && stops.Stopped ? "" : stops.Finish(text?.Flush() ?? "");
        var stats = new GenerationStats(request.PromptIds.Length, reused, generated, prefillSeconds, clock.Elapsed.TotalSeconds);
        yield return new GenerationUpdate(-1, tail, finish, stats);
    }

}

/// <summary>
/// Streams text while watching for stop strings: text that could still be the start of a stop string is
/// held back until it is decided, and nothing from a matched stop string on is emitted.
/// </summary>
internal sealed class StopStringMatcher(IReadOnlyList<string> stops)
{
    private readonly System.Text.StringBuilder _pending = new();
    public bool Stopped { get; private set; }

    public (string Emit, bool Stopped) Push(string piece)
    {
        if (stops.Count == 0) return (piece, false);
        _pending.Append(piece);
        string pending = _pending.ToString();
        int cut = -1;
        foreach (var stop in stops)
        {
            if (stop.Length == 0) continue;
            int at = pending.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (cut < 0 || at < cut)) cut = at;
        }
        if (cut >= 0)
        {
            Stopped = true;
            _pending.Clear();
            return (pending[..cut], true);
        }
        // Hold back the longest suffix that is a prefix of some stop string.
        int hold = 0;
        foreach (var stop in stops)
            for (int len = Math.Min(stop.Length - 1, pending.Length); len > hold; len--)
                if (string.CompareOrdinal(pending, pending.Length - len, stop, 0, len) == 0) { hold = len; break; }
        _pending.Clear();
        _pending.Append(pending, pending.Length - hold, hold);
        return (pending[..^hold], false);
    }

    public string Finish(string flushed)
    {
        var (emit, stopped) = Push(flushed);
        if (stopped) return emit;
        string rest = _pending.ToString();
        _pending.Clear();
        return emit + rest;
    }
}
