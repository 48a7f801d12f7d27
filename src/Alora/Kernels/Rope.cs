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
    /// <summary>[Dh/2]</summary>
    public double[] InverseFrequencies { get; }

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
    public static void Apply(float* x, int* positions, int m, int heads, RopeTable table)
        => ApplyReference(x, positions, m, heads, table);

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
