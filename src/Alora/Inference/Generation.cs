using System.Diagnostics;
using System.Runtime.CompilerServices;
using Alora.Models;
using Alora.Structured;
using Alora.Tokenization;

namespace Alora.Inference;

public sealed record GenerationRequest
{
    public required int[] PromptIds { get; init; }
    public SamplingOptions Sampling { get; init; } = SamplingOptions.Greedy;
    /// <summary>Upper bound on generated tokens.</summary>
    public int MaxTokens { get; init; } = 256;
    /// <summary>Keep going past end-of-sequence tokens (as llama.cpp's --ignore-eos).</summary>
    public bool IgnoreEos { get; init; }
    /// <summary>Tokens to generate before end-of-sequence ids may be drawn or stop strings end the request (vLLM's min_tokens).</summary>
    public int MinTokens { get; init; }
    /// <summary>Generation stops when the text contains one of these; the stop string itself is not returned.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];
    /// <summary>A LoRA (adapts every row) or an aLoRA (adapts from its invocation on); null for the base model.
    /// Used by <see cref="Generator"/>; the serving engine takes <see cref="AdapterName"/> instead.</summary>
    public ForwardAdapter? Adapter { get; init; }
    /// <summary>The name an adapter was loaded under in the serving engine; null for the base model.</summary>
    public string? AdapterName { get; init; }
    /// <summary>Report each generated token's log probability and this many top alternatives (0–20); null: none.</summary>
    public int? Logprobs { get; init; }
    /// <summary>Structured outputs: what the generated text must look like; null leaves it free.</summary>
    public Structured.OutputConstraint? Constraint { get; init; }
    /// <summary>What an aLoRA does when its invocation is absent from the prompt.</summary>
    public MissingInvocationPolicy OnMissingInvocation { get; init; } = MissingInvocationPolicy.Error;
}

public enum FinishReason { Stop, Length }

public sealed record GenerationStats(int PromptTokens, int ReusedPromptTokens, int GeneratedTokens, double PrefillSeconds, double DecodeSeconds)
{
    /// <summary>Seconds from submission to the first step that computed any of the request's tokens (engine only).</summary>
    public double QueueSeconds { get; init; }
    /// <summary>Seconds from submission to the first generated token (engine only).</summary>
    public double TimeToFirstTokenSeconds { get; init; }

    /// <summary>Prompt tokens computed (not reused) per second of prefill.</summary>
    public double PrefillTokensPerSecond => PrefillSeconds > 0 ? (PromptTokens - ReusedPromptTokens) / PrefillSeconds : 0;
    /// <summary>Tokens per second of the decode loop (every token after the first).</summary>
    public double DecodeTokensPerSecond => DecodeSeconds > 0 ? Math.Max(0, GeneratedTokens - 1) / DecodeSeconds : 0;
}

/// <summary>One streamed step: a token (or -1 on the final update when no token came), its text, and on the last update the finish reason and stats.</summary>
public sealed record GenerationUpdate(int TokenId, string Text, FinishReason? Finish = null, GenerationStats? Stats = null)
{
    /// <summary>The token's log probability and the most likely alternatives, when the request asked for them.</summary>
    public TokenLogprobs? Logprobs { get; init; }
}

/// <summary>A token id and its log probability under the model.</summary>
public readonly record struct TokenLogprob(int TokenId, float Logprob);

/// <summary>
/// Log probabilities at one generated position, as vLLM reports them by default: the log-softmax of the model's
/// logits at that position (before penalties, temperature and truncation), for the chosen token and the top
/// alternatives (most likely first, lower id first on ties).
/// </summary>
public sealed record TokenLogprobs(TokenLogprob Chosen, IReadOnlyList<TokenLogprob> Top)
{
    /// <summary>Computes them from a row of logits [V].</summary>
    public static TokenLogprobs From(ReadOnlySpan<float> logits, int chosen, int top)
    {
        float max = float.NegativeInfinity;
        foreach (float x in logits) max = Math.Max(max, x);
        double sum = 0;
        foreach (float x in logits) sum += Math.Exp(x - max);
        float logSum = max + (float)Math.Log(sum);
        var best = new List<TokenLogprob>(top + 1);
        if (top > 0)
        {
            // Keep the top k by insertion: k ≤ 20, so this is a few comparisons per logit.
            for (int id = 0; id < logits.Length; id++)
            {
                float x = logits[id];
                if (best.Count == top && x <= best[^1].Logprob) continue;
                int at = best.Count;
                while (at > 0 && best[at - 1].Logprob < x) at--;
                best.Insert(at, new TokenLogprob(id, x));
                if (best.Count > top) best.RemoveAt(top);
            }
            for (int i = 0; i < best.Count; i++) best[i] = best[i] with { Logprob = best[i].Logprob - logSum };
        }
        return new TokenLogprobs(new TokenLogprob(chosen, logits[chosen] - logSum), best);
    }
}

/// <summary>
/// Prefill then decode on one caller-held sequence. The sequence is a cache handle: if it already holds a prefix
/// of the prompt computed the way this request computes it (same tokens; the base model before the adapter's
/// activation start, the same adapter after), only the rest is computed. Other positions are dropped first.
/// So a base conversation's cache serves an aLoRA call up to its invocation, and the reverse.
/// The serving engine (<c>Alora.Serving.Engine</c>) runs the same per-request state (<see cref="GenerationState"/>)
/// for many requests at once, with a prefix cache shared across them.
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
        var state = new GenerationState(request, Model.VocabSize, eosTokenIds, textStreamFactory?.Invoke());
        var logits = new float[Model.VocabSize];

        var clock = Stopwatch.StartNew();
        Model.Forward([new SequenceChunk(sequence, request.PromptIds.AsMemory(reused), LogitRows.Last, adapter, adapterStart)], logits);
        double prefillSeconds = clock.Elapsed.TotalSeconds;
        clock.Restart();

        var oneToken = new int[1];
        SequenceChunk[] decodeStep = [new SequenceChunk(sequence, oneToken, LogitRows.Last, adapter, adapterStart)];   // reused every step
        while (!state.Finished)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var update = state.Advance(logits);
            if (!state.Finished)
            {
                // Feed the token now, so the next update's logits are ready (the KV of the final token is never needed).
                oneToken[0] = state.LastToken;
                Model.Forward(decodeStep, logits);
            }
            if (update is not null) yield return update;
        }
        yield return state.Final(reused, prefillSeconds, clock.Elapsed.TotalSeconds);
    }
}

/// <summary>
/// One request's generation state, apart from its KV: the sampler, the token history, the text stream, stop
/// strings, end-of-sequence ids and counters. <see cref="Advance"/> turns the logits of the request's last
/// position into the next token and the update to stream; after it, <see cref="Finished"/> says whether the
/// token must be fed back. Both the single-sequence <see cref="Generator"/> and the serving engine run it.
/// </summary>
public sealed class GenerationState
{
    private readonly GenerationRequest _request;
    private readonly Sampler _sampler;
    private readonly List<int> _history;
    private readonly ITokenTextStream? _text;
    private readonly StopStringMatcher _stops;
    private readonly HashSet<int> _eos;
    private readonly int[] _eosIds;
    private readonly ConstraintMatcher? _constraint;
    private readonly float[]? _masked;     // [V] the logits with the constraint's mask applied

    /// <param name="constraint">The request's compiled output constraint (<see cref="GenerationRequest.Constraint"/>), or null.</param>
    public GenerationState(GenerationRequest request, int vocabSize, IReadOnlyCollection<int> eosTokenIds, ITokenTextStream? text, ConstraintMatcher? constraint = null)
    {
        if (request.Constraint is not null && constraint is null)
            throw new ArgumentException("the request has an output constraint; pass its compiled matcher (TokenConstraint.Compile(...).Start())", nameof(constraint));
        _constraint = constraint;
        _masked = constraint is null ? null : new float[vocabSize];
        _request = request;
        _sampler = new Sampler(vocabSize, request.Sampling);
        _history = new List<int>(request.PromptIds.Length + request.MaxTokens);
        _history.AddRange(request.PromptIds);
        _text = text;
        _text?.Prime(request.PromptIds.AsSpan(Math.Max(0, request.PromptIds.Length - 4)));
        _stops = new StopStringMatcher(request.StopStrings);
        _eos = new HashSet<int>(eosTokenIds);
        _eosIds = [.. _eos];
        if (request.MaxTokens == 0) Finish = FinishReason.Length;
        else if (constraint is { IsFinal: true }) Finish = FinishReason.Stop;
    }

    public int Generated { get; private set; }
    /// <summary>The most recent token generated.</summary>
    public int LastToken { get; private set; } = -1;
    public FinishReason? Finish { get; private set; }
    public bool Finished => Finish is not null;
    /// <summary>Prompt and generated ids.</summary>
    public IReadOnlyList<int> History => _history;

    /// <summary>Samples the next token from the last position's logits [V]; returns the update to stream, or null when there is none.</summary>
    public GenerationUpdate? Advance(ReadOnlySpan<float> logits)
    {
        if (Finished) throw new InvalidOperationException("the request has already finished");
        var banned = Generated < _request.MinTokens && !_request.IgnoreEos ? _eosIds : [];
        var drawFrom = logits;
        if (_constraint is not null)
        {
            // Structured outputs: tokens the grammar does not allow next get −∞; end-of-sequence only where it may end.
            logits.CopyTo(_masked);
            _constraint.MaskLogits(_masked, _eosIds);
            drawFrom = _masked;
        }
        int token = _sampler.Sample(drawFrom, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_history), _request.PromptIds.Length, banned);
        if (_constraint is not null && float.IsNegativeInfinity(_masked![token]))
        {
            // Nothing the grammar allows could be drawn (only end-of-sequence, banned before the minimum length).
            Finish = FinishReason.Stop;
            return null;
        }
        if (_eos.Contains(token) && (!_request.IgnoreEos || _constraint is not null)) { Finish = FinishReason.Stop; return null; }
        _constraint?.Accept(token);
        Generated++;
        LastToken = token;
        _history.Add(token);
        string piece = _text?.Append(token) ?? "";
        var (emit, stopped) = Generated <= _request.MinTokens ? _stops.PushWithoutMatching(piece) : _stops.Push(piece);
        var logprobs = _request.Logprobs is int top ? TokenLogprobs.From(logits, token, top) : null;
        if (stopped)
        {
            Finish = FinishReason.Stop;
            return emit.Length > 0 ? new GenerationUpdate(token, emit) { Logprobs = logprobs } : null;
        }
        if (_constraint is { IsFinal: true }) Finish = FinishReason.Stop;   // the output is complete: nothing may follow
        else if (Generated == _request.MaxTokens) Finish = FinishReason.Length;
        return new GenerationUpdate(token, emit) { Logprobs = logprobs };
    }

    /// <summary>The last update: held-back text, the finish reason and the request's figures.</summary>
    public GenerationUpdate Final(int reusedPromptTokens, double prefillSeconds, double decodeSeconds, double queueSeconds = 0, double timeToFirstTokenSeconds = 0)
    {
        var finish = Finish ?? throw new InvalidOperationException("the request has not finished");
        string tail = finish == FinishReason.Stop && _stops.Stopped ? "" : _stops.Finish(_text?.Flush() ?? "");
        var stats = new GenerationStats(_request.PromptIds.Length, reusedPromptTokens, Generated, prefillSeconds, decodeSeconds)
        {
            QueueSeconds = queueSeconds,
            TimeToFirstTokenSeconds = timeToFirstTokenSeconds,
        };
        return new GenerationUpdate(-1, tail, finish, stats);
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

    /// <summary>Takes text that may not end the request yet (before its minimum length): it is emitted as is.</summary>
    public (string Emit, bool Stopped) PushWithoutMatching(string piece)
    {
        if (_pending.Length == 0) return (piece, false);
        string pending = _pending.ToString() + piece;
        _pending.Clear();
        return (pending, false);
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
