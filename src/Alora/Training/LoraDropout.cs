namespace Alora.Training;

// Legend: M = adapted token rows of one segment, K = the projection's input features.

/// <summary>
/// PEFT's <c>lora_dropout</c>: inverted dropout on the LoRA side path's input only (the base path sees x
/// unchanged), y += s·B·A·dropout(x), kept values scaled by 1/(1 − p). The mask is not stored: every element's
/// keep/drop is a hash of (seed, stream, layer, module, token row, column), so the backward, and the forward that
/// gradient checkpointing runs again, regenerate the very mask the forward used. The stream is what makes a mask
/// fresh: the trainer passes a different one for every forward (optimizer step × micro-batch).
/// </summary>
public sealed unsafe class LoraDropout
{
    private readonly uint _dropThreshold;   // an element is dropped when its 32-bit hash is below this
    private readonly float _keepScale;      // 1 / (1 − p)

    public LoraDropout(float probability, int seed)
    {
        if (!(probability >= 0f && probability < 1f))
            throw new ArgumentOutOfRangeException(nameof(probability), probability, "LoRA dropout must be in [0, 1)");
        Probability = probability;
        Seed = seed;
        _dropThreshold = (uint)Math.Min(uint.MaxValue, Math.Round(probability * 4294967296.0));
        _keepScale = 1f / (1f - probability);
    }

    public float Probability { get; }
    public int Seed { get; }
    public bool IsActive => Probability > 0f;

    /// <summary>The key of one forward's mask on one (layer, module): every element hash starts from it.</summary>
    public ulong ModuleKey(long stream, int layer, int moduleIndex)
    {
        ulong key = Mix((ulong)(uint)Seed ^ 0x9E3779B97F4A7C15UL);
        key = Mix(key ^ (ulong)stream);
        key = Mix(key ^ ((ulong)(uint)layer << 8 | (uint)moduleIndex));
        return key;
    }

    /// <summary>Whether element (token row, column) of a module's input is kept.</summary>
    public bool Keeps(ulong moduleKey, long tokenRow, int column, int width)
        => (uint)(Mix(moduleKey + (ulong)(tokenRow * width + column) * 0x9E3779B97F4A7C15UL) >> 32) >= _dropThreshold;

    /// <summary>dropped[M, K] = mask ⊙ x[M, K] / (1 − p) for token rows firstRow … firstRow + M − 1.</summary>
    public void Apply(float* dropped, float* x, ulong moduleKey, long firstRow, int m, int k)
    {
        for (int i = 0; i < m; i++)
        {
            float* source = x + (long)i * k, target = dropped + (long)i * k;
            for (int j = 0; j < k; j++)
                target[j] = Keeps(moduleKey, firstRow + i, j, k) ? source[j] * _keepScale : 0f;
        }
    }

    /// <summary>dx[M, K] += mask ⊙ dDropped[M, K] / (1 − p): the side path's input gradient back through the mask.</summary>
    public void AddBackward(float* dx, float* dDropped, ulong moduleKey, long firstRow, int m, int k)
    {
        for (int i = 0; i < m; i++)
        {
            float* source = dDropped + (long)i * k, target = dx + (long)i * k;
            for (int j = 0; j < k; j++)
                if (Keeps(moduleKey, firstRow + i, j, k)) target[j] += source[j] * _keepScale;
        }
    }

    /// <summary>SplitMix64's finalizer: a bijective mix whose high bits are close to uniform.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
