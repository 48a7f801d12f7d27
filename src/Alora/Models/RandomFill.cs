using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Models;

/// <summary>Fast deterministic uniform fill (splitmix64 per chunk), parallel over the worker pool.</summary>
internal static unsafe class RandomFill
{
    private const long ChunkElements = 1 << 16;

    /// <summary>data[n] = center + scale · U(-1, 1), stored in <paramref name="dtype"/>.</summary>
    public static void Uniform(byte* data, DType dtype, long n, float center, float scale, ulong seed)
    {
        var task = new FillTask { Data = data, DType = dtype, Count = n, Center = center, Scale = scale, Seed = seed };
        WorkerPool.Shared.For((int)((n + ChunkElements - 1) / ChunkElements), ref task);
    }

    private struct FillTask : IParallelTask
    {
        public byte* Data;
        public DType DType;
        public long Count;
        public float Center, Scale;
        public ulong Seed;

        public void Execute(int index)
        {
            long start = index * ChunkElements, end = Math.Min(Count, start + ChunkElements);
            ulong state = Seed * 0x9E3779B97F4A7C15UL + (ulong)index * 0xD1B54A32D192ED03UL + 1;
            for (long i = start; i < end; i++)
            {
                state += 0x9E3779B97F4A7C15UL;
                ulong z = state;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                z ^= z >> 31;
                float u = (z >> 40) * (1f / (1 << 24)) * 2f - 1f;
                float value = Center + Scale * u;
                switch (DType)
                {
                    case DType.F32: ((float*)Data)[i] = value; break;
                    case DType.BF16: ((ushort*)Data)[i] = Half16.SingleToBFloat16(value); break;
                    default: ((ushort*)Data)[i] = Half16.SingleToHalf(value); break;
                }
            }
        }
    }
}
