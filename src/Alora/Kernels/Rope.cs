using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace Alora.Kernels;

// Legend: M = rows (tokens), H = heads, Dh = head size, P = position.

/// <summary>
/// Rotary position embedding in Hugging Face's rotate-half layout: the pairs are (i, i + Dh/2).
/// GGUF/Meta checkpoints store q/k in the adjacent-pair layout; the loaders permute them at load time,
/// so every model runs in this one layout.
/// </summary>
public sealed class RopeTable
{
    /// <param name="inverseFrequencies">[Dh/2] the angle per position of each pair.</param>
    public RopeTable(int headDim, double[] inverseFrequencies)
    {
        if (headDim % 2 != 0) throw new ArgumentException($"RoPE needs an even head size, got {headDim}", nameof(headDim));
        if (inverseFrequencies.Length != headDim / 2)
            throw new ArgumentException($"expected {headDim / 2} inverse frequencies, got {inverseFrequencies.Length}", nameof(inverseFrequencies));
        HeadDim = headDim;
        InverseFrequencies = inverseFrequencies;
    }

    public int HeadDim { get; }
    /// <summary>[Dh/2]. Treat as read-only once the table is in use: Rope.Apply caches cos/sin from it.</summary>
    public double[] InverseFrequencies { get; }

    /// <summary>Positions whose cos/sin rows are cached at most (16 Ki positions × Dh floats).</summary>
    internal const int MaxCachedPositions = 1 << 14;

    private volatile CosSinCache? _cache;
    private readonly object _cacheGate = new();

    /// <summary>cos and sin of position·inv_freq, each [P, Dh/2], for positions [0, P).</summary>
    private sealed class CosSinCache(int positions, float[] cos, float[] sin)
    {
        public readonly int Positions = positions;
        public readonly float[] Cos = cos;
        public readonly float[] Sin = sin;
    }

    /// <summary>
    /// Writes cos and sin of <paramref name="position"/>·inv_freq[j] for every pair j into cos[Dh/2] and
    /// sin[Dh/2], computed in double and rounded to float exactly as the reference does. Rows of positions
    /// below <see cref="MaxCachedPositions"/> come from a table that grows (by doubling) on first use.
    /// </summary>
    internal unsafe void CosSin(int position, float* cos, float* sin)
    {
        int half = HeadDim / 2;
        if (position < 0 || position >= MaxCachedPositions)
        {
            Compute(position, cos, sin);
            return;
        }
        CosSinCache cache = _cache is { } c && position < c.Positions ? c : Grow(position);
        new ReadOnlySpan<float>(cache.Cos, position * half, half).CopyTo(new Span<float>(cos, half));
        new ReadOnlySpan<float>(cache.Sin, position * half, half).CopyTo(new Span<float>(sin, half));
    }

    private unsafe void Compute(int position, float* cos, float* sin)
    {
        for (int j = 0; j < InverseFrequencies.Length; j++)
        {
            double angle = position * InverseFrequencies[j];
            cos[j] = (float)Math.Cos(angle);
            sin[j] = (float)Math.Sin(angle);
        }
    }

    private unsafe CosSinCache Grow(int position)
    {
        lock (_cacheGate)
        {
            CosSinCache? old = _cache;
            if (old is not null && position < old.Positions) return old;
            int positions = Math.Max(256, old?.Positions ?? 0);
            while (positions <= position) positions *= 2;
            positions = Math.Min(positions, MaxCachedPositions);
            int half = HeadDim / 2;
            var cos = new float[positions * half];
            var sin = new float[positions * half];
            int start = 0;
            if (old is not null)
            {
                old.Cos.CopyTo(cos, 0);
                old.Sin.CopyTo(sin, 0);
                start = old.Positions;
            }
            fixed (float* pc = cos)
            fixed (float* ps = sin)
            {
                for (int p = start; p < positions; p++) Compute(p, pc + (long)p * half, ps + (long)p * half);
            }
            var grown = new CosSinCache(positions, cos, sin);
            _cache = grown;
            return grown;
        }
    }

    /// <summary>inv_freq[i] = theta^(-2i/Dh), then the `llama3` rope_scaling rule when given.</summary>
    public static RopeTable Create(int headDim, double theta, RopeScaling? scaling = null)
    {
        var inv = new double[headDim / 2];
        for (int i = 0; i < inv.Length; i++) inv[i] = 1.0 / Math.Pow(theta, 2.0 * i / headDim);
        if (scaling is not null) scaling.Apply(inv);
        return new RopeTable(headDim, inv);
    }
}

/// <summary>Llama 3.1's frequency-dependent RoPE scaling (rope_type "llama3").</summary>
public sealed record RopeScaling(double Factor, double LowFreqFactor, double HighFreqFactor, int OriginalMaxPositionEmbeddings)
{
    public void Apply(double[] inverseFrequencies)
    {
        double lowFreqWavelen = OriginalMaxPositionEmbeddings / LowFreqFactor;
        double highFreqWavelen = OriginalMaxPositionEmbeddings / HighFreqFactor;
        for (int i = 0; i < inverseFrequencies.Length; i++)
        {
            double freq = inverseFrequencies[i];
            double wavelen = 2 * Math.PI / freq;
            if (wavelen > lowFreqWavelen)
            {
                inverseFrequencies[i] = freq / Factor;
            }
            else if (wavelen >= highFreqWavelen)
            {
                // Medium band: interpolate between scaled and unscaled.
                double smooth = (OriginalMaxPositionEmbeddings / wavelen - LowFreqFactor) / (HighFreqFactor - LowFreqFactor);
                inverseFrequencies[i] = (1 - smooth) * freq / Factor + smooth * freq;
            }
        }
    }
}

public static unsafe class Rope
{
    /// <summary>Rotates x[M, H*Dh] in place, row i at position positions[i].</summary>
    /// <remarks>
    /// cos/sin come from the table's cache (the same double-precision values the reference computes), and
    /// the rotation uses the reference's separate multiplies and subtract, so results are bit-identical.
    /// </remarks>
    [SkipLocalsInit]
    public static void Apply(float* x, int* positions, int m, int heads, RopeTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        ArgumentOutOfRangeException.ThrowIfNegative(heads);
        int dh = table.HeadDim, half = dh / 2;
        if (m == 0 || heads == 0 || half == 0) return;
        const int StackPairs = 512;
        float[]? heap = half > StackPairs ? new float[2 * half] : null;
        Span<float> buffer = heap ?? stackalloc float[2 * StackPairs];
        fixed (float* cosSin = buffer)
        {
            float* cos = cosSin, sin = cosSin + half; // [Dh/2] each, for the current row's position
            for (int i = 0; i < m; i++)
            {
                table.CosSin(positions[i], cos, sin);
                for (int h = 0; h < heads; h++) Rotate(x + ((long)i * heads + h) * dh, cos, sin, half);
            }
        }
    }

    /// <summary>v[j], v[j + half] = (a·cos − b·sin, b·cos + a·sin) for each pair j.</summary>
    private static void Rotate(float* v, float* cos, float* sin, int half)
    {
        float* upper = v + half;
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            for (; j + 16 <= half; j += 16)
            {
                Vector512<float> a = Vector512.Load(v + j), b = Vector512.Load(upper + j);
                Vector512<float> c = Vector512.Load(cos + j), s = Vector512.Load(sin + j);
                (a * c - b * s).Store(v + j);
                (b * c + a * s).Store(upper + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            for (; j + 8 <= half; j += 8)
            {
                Vector256<float> a = Vector256.Load(v + j), b = Vector256.Load(upper + j);
                Vector256<float> c = Vector256.Load(cos + j), s = Vector256.Load(sin + j);
                (a * c - b * s).Store(v + j);
                (b * c + a * s).Store(upper + j);
            }
        }
        for (; j < half; j++)
        {
            float a = v[j], b = upper[j];
            v[j] = a * cos[j] - b * sin[j];
            upper[j] = b * cos[j] + a * sin[j];
        }
    }

    public static void ApplyReference(float* x, int* positions, int m, int heads, RopeTable table)
    {
        int dh = table.HeadDim, half = dh / 2;
        for (int i = 0; i < m; i++)
        {
            int p = positions[i];
            for (int j = 0; j < half; j++)
            {
                double angle = p * table.InverseFrequencies[j];
                float cos = (float)Math.Cos(angle), sin = (float)Math.Sin(angle);
                for (int h = 0; h < heads; h++)
                {
                    float* v = x + ((long)i * heads + h) * dh;
                    float a = v[j], b = v[j + half];
                    v[j] = a * cos - b * sin;
                    v[j + half] = b * cos + a * sin;
                }
            }
        }
    }
}
