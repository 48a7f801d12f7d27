using System.Runtime.CompilerServices;
using Alora.Kernels;

namespace Alora.Training;

// Legend: M = token rows, H = heads, Dh = head size.

/// <summary>
/// Backward of rotary embedding: the rotation is orthogonal, so the gradient is rotated back by the same angle
/// (the transpose): (da, db) = (dy_a·cos + dy_b·sin, dy_b·cos − dy_a·sin) for each pair (j, j + Dh/2).
/// </summary>
public static unsafe class RopeTraining
{
    /// <summary>Rotates dx[M, H*Dh] back in place; row i was at position positions[i].</summary>
    [SkipLocalsInit]
    public static void Backward(float* dx, int* positions, int m, int heads, RopeTable table)
    {
        ArgumentNullException.ThrowIfNull(table);
        ArgumentOutOfRangeException.ThrowIfNegative(m);
        int dh = table.HeadDim, half = dh / 2;
        if (m == 0 || heads <= 0 || half == 0) return;
        float[]? heap = half > 512 ? new float[2 * half] : null;
        Span<float> buffer = heap ?? stackalloc float[2 * half];
        fixed (float* cosSin = buffer)
        {
            float* cos = cosSin, sin = cosSin + half;   // [Dh/2] each
            for (int i = 0; i < m; i++)
            {
                table.CosSin(positions[i], cos, sin);
                for (int h = 0; h < heads; h++)
                {
                    float* v = dx + ((long)i * heads + h) * dh, upper = v + half;
                    for (int j = 0; j < half; j++)
                    {
                        float a = v[j], b = upper[j];
                        v[j] = a * cos[j] + b * sin[j];
                        upper[j] = b * cos[j] - a * sin[j];
                    }
                }
            }
        }
    }

    /// <summary>Reference twin: angles computed in double per element.</summary>
    public static void BackwardReference(float* dx, int* positions, int m, int heads, RopeTable table)
    {
        int dh = table.HeadDim, half = dh / 2;
        for (int i = 0; i < m; i++)
            for (int h = 0; h < heads; h++)
                for (int j = 0; j < half; j++)
                {
                    double angle = positions[i] * table.InverseFrequencies[j];
                    float cos = (float)Math.Cos(angle), sin = (float)Math.Sin(angle);
                    float* v = dx + ((long)i * heads + h) * dh;
                    float a = v[j], b = v[j + half];
                    v[j] = a * cos + b * sin;
                    v[j + half] = b * cos - a * sin;
                }
    }
}
