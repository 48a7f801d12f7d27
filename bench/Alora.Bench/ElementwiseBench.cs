using System.Runtime.InteropServices;
using Alora.Kernels;
using Alora.Tensors;
using KernelConvert = Alora.Kernels.Convert;

namespace Alora.Bench;

/// <summary>The vector elementwise kernels against their scalar reference twins, at prefill sizes (one thread).</summary>
internal static unsafe class ElementwiseBench
{
    public static void Run()
    {
        const int rows = 512, hidden = 896, intermediate = 4864, heads = 14, headDim = 64, context = 2048;
        long big = (long)rows * intermediate;
        float* a = Alloc(big), b = Alloc(big), gamma = Alloc(hidden);
        ushort* half = (ushort*)NativeMemory.AlignedAlloc((nuint)(big * 2), 64);
        int* positions = (int*)NativeMemory.Alloc(rows * sizeof(int));
        try
        {
            var random = new Random(3);
            for (long i = 0; i < big; i++) { a[i] = random.NextSingle() * 4 - 2; b[i] = random.NextSingle() * 4 - 2; half[i] = Half16.SingleToBFloat16(a[i]); }
            for (int i = 0; i < hidden; i++) gamma[i] = 1 + i * 1e-3f;
            for (int i = 0; i < rows; i++) positions[i] = i;
            var rope = RopeTable.Create(headDim, 1e6);
            Console.WriteLine("kernel                          shape            | vector µs | reference µs | speed-up");
            Report("RmsNorm", $"[{rows}, {hidden}]",
                () => Elementwise.RmsNorm(b, a, gamma, rows, hidden, 1e-6f), () => Elementwise.RmsNormReference(b, a, gamma, rows, hidden, 1e-6f));
            Report("SiluMul", $"[{rows}, {intermediate}]",
                () => Elementwise.SiluMul(b, a, big), () => Elementwise.SiluMulReference(b, a, big));
            Report("Softmax (attention row)", $"{rows} x [{context}]",
                () => { for (int r = 0; r < rows; r++) Elementwise.Softmax(b + (long)r * context, context); },
                () => { for (int r = 0; r < rows; r++) Elementwise.SoftmaxReference(b + (long)r * context, context); });
            Report("Axpy (residual)", $"[{rows}, {hidden}]",
                () => Elementwise.Axpy(b, 1f, a, (long)rows * hidden), () => Elementwise.AxpyReference(b, 1f, a, (long)rows * hidden));
            Report("Dot", $"{rows} x [{hidden}]",
                () => { for (int r = 0; r < rows; r++) Elementwise.Dot(a + (long)r * hidden, b, hidden); },
                () => { for (int r = 0; r < rows; r++) Elementwise.DotReference(a + (long)r * hidden, b, hidden); });
            Report("Rope.Apply (q)", $"[{rows}, {heads}x{headDim}]",
                () => Rope.Apply(b, positions, rows, heads, rope), () => Rope.ApplyReference(b, positions, rows, heads, rope));
            Report("Convert bf16→f32", $"[{big}]",
                () => KernelConvert.ToSingle(b, half, DType.BF16, big), () => KernelConvert.ToSingleReference(b, half, DType.BF16, big));
            Report("Convert f16→f32", $"[{big}]",
                () => KernelConvert.ToSingle(b, half, DType.F16, big), () => KernelConvert.ToSingleReference(b, half, DType.F16, big));
        }
        finally
        {
            NativeMemory.AlignedFree(a); NativeMemory.AlignedFree(b); NativeMemory.AlignedFree(gamma);
            NativeMemory.AlignedFree(half); NativeMemory.Free(positions);
        }
    }

    private static void Report(string name, string shape, Action vector, Action reference)
    {
        double fast = BenchTimer.Best(vector, 0.2), slow = BenchTimer.Best(reference, 0.2);
        Console.WriteLine($"{name,-31} {shape,-16} | {fast * 1e6,9:F0} | {slow * 1e6,12:F0} | {slow / fast,7:F1}x");
    }

    private static float* Alloc(long count) => (float*)NativeMemory.AlignedAlloc((nuint)(count * sizeof(float)), 64);
}
