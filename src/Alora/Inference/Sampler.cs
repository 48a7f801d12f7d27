namespace Alora.Inference;

/// <summary>
/// Sampling settings, applied in llama.cpp's order: repetition penalty, then temperature, top-k, top-p and
/// min-p, then a draw. Temperature 0 is greedy (argmax, lowest id on ties).
/// </summary>
public sealed record SamplingOptions
{
    public float Temperature { get; init; } = 0.8f;
    /// <summary>0 keeps every token.</summary>
    public int TopK { get; init; } = 40;
    /// <summary>1 keeps every token.</summary>
    public float TopP { get; init; } = 0.95f;
    /// <summary>0 keeps every token.</summary>
    public float MinP { get; init; } = 0.05f;
    /// <summary>1 is off. Penalizes tokens seen in the last <see cref="RepetitionWindow"/> tokens (prompt included).</summary>
    public float RepetitionPenalty { get; init; } = 1f;
    /// <summary>How many previous tokens the penalty looks at; -1 = all.</summary>
    public int RepetitionWindow { get; init; } = 64;
    public ulong? Seed { get; init; }
    /// <summary>OpenAI's frequency penalty: each generated occurrence of a token lowers its logit by this much (0 is off).</summary>
    public float FrequencyPenalty { get; init; }
    /// <summary>OpenAI's presence penalty: a token generated at least once has its logit lowered by this much (0 is off).</summary>
    public float PresencePenalty { get; init; }

    public static SamplingOptions Greedy { get; } = new() { Temperature = 0 };

    public void Validate()
    {
        if (Temperature < 0 || float.IsNaN(Temperature)) throw new ArgumentException($"temperature must be >= 0, got {Temperature}");
        if (TopK < 0) throw new ArgumentException($"top-k must be >= 0, got {TopK}");
        if (TopP is <= 0 or > 1) throw new ArgumentException($"top-p must be in (0, 1], got {TopP}");
        if (MinP is < 0 or > 1) throw new ArgumentException($"min-p must be in [0, 1], got {MinP}");
        if (RepetitionPenalty <= 0) throw new ArgumentException($"repetition penalty must be > 0, got {RepetitionPenalty}");
        if (FrequencyPenalty is < -2 or > 2 || float.IsNaN(FrequencyPenalty)) throw new ArgumentException($"frequency penalty must be in [-2, 2], got {FrequencyPenalty}");
        if (PresencePenalty is < -2 or > 2 || float.IsNaN(PresencePenalty)) throw new ArgumentException($"presence penalty must be in [-2, 2], got {PresencePenalty}");
    }
}

/// <summary>
/// Turns a row of logits into a token id. Its buffers are sized to the vocabulary once, so a decode step
/// allocates nothing.
/// </summary>
public sealed class Sampler
{
    private readonly SamplingOptions _options;
    private readonly int[] _candidates;     // [V] token ids, sorted by logit when needed
    private readonly float[] _probabilities; // [V]
    private readonly float[] _logits;        // [V] working copy
    private ulong _state;
    private int[]? _counts;                  // [V] scratch for the frequency penalty, all zero between calls

    public Sampler(int vocabSize, SamplingOptions options)
    {
        options.Validate();
        _options = options;
        _candidates = new int[vocabSize];
        _probabilities = new float[vocabSize];
        _logits = new float[vocabSize];
        _state = options.Seed ?? (ulong)Random.Shared.NextInt64();
        if (_state == 0) _state = 0x853C49E6748FEA9BUL;
    }

    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history) => Sample(logits, history, history.Length, []);

    /// <param name="history">Prompt and generated ids (the repetition penalty looks at both).</param>
    /// <param name="generatedStart">Where the generated ids begin in <paramref name="history"/> (frequency and presence penalties count only those).</param>
    /// <param name="banned">Ids that must not be drawn now (end-of-sequence ids before a request's minimum length).</param>
    public int Sample(ReadOnlySpan<float> logits, ReadOnlySpan<int> history, int generatedStart, ReadOnlySpan<int> banned)
    {
        var o = _options;
        var working = _logits.AsSpan(0, logits.Length);
        logits.CopyTo(working);
        if (o.FrequencyPenalty != 0 || o.PresencePenalty != 0)
        {
            var counts = _counts ??= new int[logits.Length];
            var generated = history[generatedStart..];
            foreach (int id in generated) counts[id]++;
            foreach (int id in generated)
            {
                if (counts[id] == 0) continue;   // already applied
                working[id] -= counts[id] * o.FrequencyPenalty + o.PresencePenalty;
                counts[id] = 0;
            }
        }
        foreach (int id in banned) working[id] = float.NegativeInfinity;
        if (o.RepetitionPenalty != 1f)
        {
            int start = o.RepetitionWindow < 0 ? 0 : Math.Max(0, history.Length - o.RepetitionWindow);
            foreach (int id in history[start..])
            {
                // Applying twice to a repeated id would over-penalize: mark by sign trick is unsafe, so check the original.
                if (working[id] != logits[id]) continue;
                working[id] = logits[id] > 0 ? logits[id] / o.RepetitionPenalty : logits[id] * o.RepetitionPenalty;
            }
        }
        if (o.Temperature == 0) return ArgMax(working);

        int n = working.Length;
        var candidates = _candidates.AsSpan(0, n);
        for (int i = 0; i < n; i++) candidates[i] = i;
        float inverseTemperature = 1f / o.Temperature;
        for (int i = 0; i < n; i++) working[i] *= inverseTemperature;

        int kept = n;
        if (o.TopK > 0 && o.TopK < n)
        {
            PartialSortDescending(candidates, working, o.TopK);
            kept = o.TopK;
        }
        candidates[..kept].Sort(new ByLogitDescending(_logits));

        // Softmax over the kept candidates (they are sorted, so the first is the max).
        var probabilities = _probabilities.AsSpan(0, kept);
        float max = working[candidates[0]];
        double sum = 0;
        for (int i = 0; i < kept; i++)
        {
            probabilities[i] = MathF.Exp(working[candidates[i]] - max);
            sum += probabilities[i];
        }
        for (int i = 0; i < kept; i++) probabilities[i] = (float)(probabilities[i] / sum);

        if (o.TopP < 1f)
        {
            double cumulative = 0;
            for (int i = 0; i < kept; i++)
            {
                cumulative += probabilities[i];
                if (cumulative >= o.TopP) { kept = i + 1; break; }
            }
        }
        if (o.MinP > 0f)
        {
            float threshold = probabilities[0] * o.MinP;
            int i = 1;
            while (i < kept && probabilities[i] >= threshold) i++;
            kept = i;
        }

        double total = 0;
        for (int i = 0; i < kept; i++) total += probabilities[i];
        double draw = NextDouble() * total;
        double acc = 0;
        for (int i = 0; i < kept; i++)
        {
            acc += probabilities[i];
            if (draw < acc) return candidates[i];
        }
        return candidates[kept - 1];
    }

    public static int ArgMax(ReadOnlySpan<float> values)
    {
        int best = 0;
        for (int i = 1; i < values.Length; i++) if (values[i] > values[best]) best = i;
        return best;
    }

    /// <summary>Moves the k largest (by value, then lower id) to the front, in no particular order.</summary>
    private static void PartialSortDescending(Span<int> ids, ReadOnlySpan<float> values, int k)
    {
        // Quickselect on (value desc, id asc).
        int lo = 0, hi = ids.Length - 1;
        while (lo < hi)
        {
            int pivotId = ids[(lo + hi) >>> 1];
            int i = lo, j = hi;
            while (i <= j)
            {
                while (Before(ids[i], pivotId, values)) i++;
                while (Before(pivotId, ids[j], values)) j--;
                if (i <= j) { (ids[i], ids[j]) = (ids[j], ids[i]); i++; j--; }
            }
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
    }

    private static bool Before(int a, int b, ReadOnlySpan<float> values)
        => values[a] > values[b] || (values[a] == values[b] && a < b);

    /// <summary>Orders ids by logit, highest first, lower id first on ties (a struct: sorting allocates nothing).</summary>
    private readonly struct ByLogitDescending(float[] values) : IComparer<int>
    {
        public int Compare(int a, int b) => values[a] != values[b] ? values[b].CompareTo(values[a]) : a.CompareTo(b);
    }

    /// <summary>xorshift64*: deterministic for a seed, uniform in [0, 1).</summary>
    private double NextDouble()
    {
        _state ^= _state >> 12;
        _state ^= _state << 25;
        _state ^= _state >> 27;
        return ((_state * 0x2545F4914F6CDD1DUL) >> 11) * (1.0 / (1UL << 53));
    }
}
