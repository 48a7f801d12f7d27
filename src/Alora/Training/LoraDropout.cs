using Alora.Kernels;

namespace Alora.Training;

// Legend: M = adapted token rows of one segment, K = the projection's input features.

/// <summary>
/// PEFT's <c>lora_dropout</c>: inverted dropout on the LoRA side path's input only (the base path sees x
/// unchanged), y += s·B·A·dropout(x), kept values scaled by 1/(1 − p). The mask is not stored between passes:
/// every element's keep/drop is a hash of (seed, stream, layer, module, token row, column), so the backward, and
/// the forward that gradient checkpointing runs again, regenerate the very mask the forward used. The stream is
/// what makes a mask fresh: the trainer passes a different one for every forward (optimizer step × micro-batch).
/// </summary>
public sealed unsafe class LoraDropout
{
    private const ulong Golden = 0x9E3779B97F4A7C15UL;
    private readonly uint _dropThreshold;   // an element is dropped when its 32-bit draw is below this
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

    /// <summary>The key of one forward's mask on one (layer, module): every element's draw starts from it.</summary>
    public ulong ModuleKey(long stream, int layer, int moduleIndex)
    {
        ulong key = Mix((ulong)(uint)Seed ^ Golden);
        key = Mix(key ^ (ulong)stream);
        key = Mix(key ^ ((ulong)(uint)layer << 8 | (uint)moduleIndex));
        return key;
    }

    /// <summary>Whether element (token row, column) of a module's input [rows, width] is kept.</summary>
    public bool Keeps(ulong moduleKey, long tokenRow, int column, int width)
    {
        // One 64-bit hash serves two neighbouring elements (low half: even index, high half: odd).
        long element = tokenRow * width + column;
        ulong hash = Mix(moduleKey + (ulong)(element >> 1) * Golden);
        uint draw = (element & 1) == 0 ? (uint)hash : (uint)(hash >> 32);
        return draw >= _dropThreshold;
    }

    /// <summary>
    /// dropped[M, K] = mask ⊙ x[M, K] / (1 − p) for token rows firstRow … firstRow + M − 1; with
    /// <paramref name="mask"/> [M, K], also 1 (kept) or 0 per element, for <see cref="AddBackward"/>.
    /// </summary>
    public void Apply(float* dropped, float* x, ulong moduleKey, long firstRow, int m, int k, byte* mask = null)
    {
        var task = new ApplyTask { Dropped = dropped, X = x, Mask = mask, Key = moduleKey, FirstRow = firstRow, M = m, K = k, Threshold = _dropThreshold, Scale = _keepScale };
        Run(ref task, m, k);
    }

    /// <summary>dx[M, K] += mask ⊙ dDropped[M, K] / (1 − p): the side path's input gradient back through the mask of <see cref="Apply"/>.</summary>
    public void AddBackward(float* dx, float* dDropped, byte* mask, int m, int k)
    {
        long count = (long)m * k;
        for (long i = 0; i < count; i++)
            if (mask[i] != 0) dx[i] += dDropped[i] * _keepScale;
    }

    private static void Run(ref ApplyTask task, int m, int k)
    {
        var pool = WorkerPool.Shared;
        task.Chunks = (long)m * k < 16_384 ? 1 : Math.Min(m, pool.ThreadCount * 2);
        if (task.Chunks == 1) task.Execute(0);
        else pool.For(task.Chunks, ref task);
    }

    /// <summary>Rows split into contiguous chunks; each element's draw depends only on its own index, so any split gives the same mask.</summary>
    private struct ApplyTask : IParallelTask
    {
        public float* Dropped, X;
        public byte* Mask;
        public ulong Key;
        public long FirstRow;
        public int M, K, Chunks;
        public uint Threshold;
        public float Scale;

        public readonly void Execute(int index)
        {
            int i0 = (int)((long)M * index / Chunks), i1 = (int)((long)M * (index + 1) / Chunks);
            for (int i = i0; i < i1; i++)
            {
                long rowElement = (FirstRow + i) * K;
                float* source = X + (long)i * K, target = Dropped + (long)i * K;
                byte* maskRow = Mask == null ? null : Mask + (long)i * K;
                ulong hash = 0;
                for (int j = 0; j < K; j++)
                {
                    long element = rowElement + j;
                    if (j == 0 || (element & 1) == 0) hash = Mix(Key + (ulong)(element >> 1) * Golden);
                    uint draw = (element & 1) == 0 ? (uint)hash : (uint)(hash >> 32);
                    bool keep = draw >= Threshold;
                    target[j] = keep ? source[j] * Scale : 0f;
                    if (maskRow != null) maskRow[j] = keep ? (byte)1 : (byte)0;
                }
            }
        }
    }

    /// <summary>SplitMix64's finalizer: a bijective mix whose bits are close to uniform.</summary>
    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
