using System.Runtime.Intrinsics;
using Alora.Kernels;
using Alora.Tensors;

namespace Alora.Models;

// Legend: r = rank, in/out = a projection's input/output features, M = adapted rows.
// W [out, in] the frozen weight, A [r, in], B [out, r], s the LoRA scaling, m [out] DoRA's magnitude vector,
// n [out] the weight norm ‖W + s·B·A‖ of each output feature (the norm of row j of the [out, in] matrix),
// g = m / n [out] the per-feature scale.

/// <summary>
/// DoRA (weight-decomposed LoRA, PEFT's <c>use_dora</c>) as PEFT computes it for a Linear layer:
/// W' = m ⊙ (W + s·B·A) / ‖W + s·B·A‖ (row-wise norm, one per output feature). In the forward pass PEFT adds
/// (g − 1)·(x·Wᵀ) + g·s·(x·Aᵀ)·Bᵀ to the base output x·Wᵀ + bias, where g = m / n and n is detached from the
/// gradient (DoRA paper §4.3), so n is a constant that depends on A and B but carries no gradient.
/// </summary>
public static unsafe class Dora
{
    /// <summary>
    /// n[j] = ‖W[j, :] + s·B[j, :]·A‖₂ for every output feature j (f32 products, the sum of squares in f64).
    /// W may be f32, bf16 or f16; A and B are f32. Runs on the thread pool over row ranges (not the worker pool,
    /// so any thread may call it).
    /// </summary>
    public static void WeightNorms(float* norms, in WeightMatrix weight, float* a, float* b, int rank, float scaling)
    {
        int rows = weight.Rows, cols = weight.Cols;
        if (rows == 0) return;
        var w = weight;
        int chunks = Math.Clamp((int)((long)rows * cols * Math.Max(rank, 1) / 262_144), 1, Math.Min(rows, Environment.ProcessorCount * 2));
        void Chunk(int c)
        {
            int r0 = (int)((long)rows * c / chunks), r1 = (int)((long)rows * (c + 1) / chunks);
            var rowBuffer = new float[cols];
            fixed (float* row = rowBuffer)
            {
                for (int j = r0; j < r1; j++)
                {
                    Kernels.Convert.ToSingle(row, (byte*)w.Data + (long)j * cols * w.DType.ByteSize(), w.DType, cols);
                    for (int k = 0; k < rank; k++)
                    {
                        float coefficient = scaling * b[(long)j * rank + k];
                        if (coefficient != 0) Elementwise.Axpy(row, coefficient, a + (long)k * cols, cols);
                    }
                    double sum = 0;
                    for (int i = 0; i < cols; i++) sum += (double)row[i] * row[i];
                    norms[j] = (float)Math.Sqrt(sum);
                }
            }
        }
        if (chunks == 1) Chunk(0);
        else Parallel.For(0, chunks, Chunk);
    }

    /// <summary>Scalar reference twin of <see cref="WeightNorms"/>, all in f64.</summary>
    public static void WeightNormsReference(float* norms, in WeightMatrix weight, float* a, float* b, int rank, float scaling)
    {
        for (int j = 0; j < weight.Rows; j++)
        {
            double sum = 0;
            for (int i = 0; i < weight.Cols; i++)
            {
                double v = weight[j, i];
                for (int k = 0; k < rank; k++) v += (double)scaling * b[(long)j * rank + k] * a[(long)k * weight.Cols + i];
                sum += v * v;
            }
            norms[j] = (float)Math.Sqrt(sum);
        }
    }

    /// <summary>g[j] = m[j] / n[j] (PEFT's mag_norm_scale).</summary>
    public static void Scales(float* g, float* magnitude, float* norms, int n)
    {
        for (int j = 0; j < n; j++) g[j] = magnitude[j] / norms[j];
    }

    /// <summary>
    /// One row of the DoRA output: y[j] += (g[j] − 1)·(y[j] − bias[j]) + g[j]·lora[j], where y holds the base
    /// output x·Wᵀ + bias and lora the side path s·(x·Aᵀ)·Bᵀ; bias may be null. Multiplies and adds are not fused,
    /// so the vector body and the scalar tail round alike and a row's result does not depend on its length split.
    /// </summary>
    public static void CombineRow(float* y, float* lora, float* g, float* bias, int n)
    {
        int j = 0;
        if (Vector512.IsHardwareAccelerated)
        {
            var one = Vector512.Create(1f);
            for (; j + 16 <= n; j += 16)
            {
                var yv = Vector512.Load(y + j);
                var gv = Vector512.Load(g + j);
                var baseOut = bias == null ? yv : yv - Vector512.Load(bias + j);
                (yv + ((gv - one) * baseOut + gv * Vector512.Load(lora + j))).Store(y + j);
            }
        }
        else if (Vector256.IsHardwareAccelerated)
        {
            var one = Vector256.Create(1f);
            for (; j + 8 <= n; j += 8)
            {
                var yv = Vector256.Load(y + j);
                var gv = Vector256.Load(g + j);
                var baseOut = bias == null ? yv : yv - Vector256.Load(bias + j);
                (yv + ((gv - one) * baseOut + gv * Vector256.Load(lora + j))).Store(y + j);
            }
        }
        for (; j < n; j++) CombineOne(y + j, lora[j], g[j], bias == null ? 0f : bias[j], bias != null);
    }

    /// <summary>
    /// One row of PEFT's DoRA output when the base product is computed apart (training with dropout, where it is
    /// taken on the dropped input): y[j] += (g[j] − 1)·baseOut[j] + g[j]·lora[j].
    /// </summary>
    public static void AddRow(float* y, float* baseOut, float* lora, float* g, int n)
    {
        for (int j = 0; j < n; j++)
        {
            float product1 = (g[j] - 1f) * baseOut[j], product2 = g[j] * lora[j];
            float sum = product1 + product2;
            y[j] += sum;
        }
    }

    /// <summary>Scalar reference twin of <see cref="CombineRow"/>.</summary>
    public static void CombineRowReference(float* y, float* lora, float* g, float* bias, int n)
    {
        for (int j = 0; j < n; j++) CombineOne(y + j, lora[j], g[j], bias == null ? 0f : bias[j], bias != null);
    }

    private static void CombineOne(float* y, float lora, float g, float bias, bool hasBias)
    {
        float baseOut = hasBias ? *y - bias : *y;
        float gMinusOne = g - 1f;
        float product1 = gMinusOne * baseOut, product2 = g * lora;
        float sum = product1 + product2;
        *y += sum;
    }
}
