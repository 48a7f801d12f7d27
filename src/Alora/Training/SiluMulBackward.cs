namespace Alora.Training;

// Legend: n = elements (token rows × intermediate size).

/// <summary>Backward of the SiLU-gated MLP activation a = silu(g)·u.</summary>
public static unsafe class SiluMulTraining
{
    /// <summary>
    /// dgate[n] = da·u·σ(g)·(1 + g·(1 − σ(g))), dup[n] = da·silu(g). dgate may alias da (in place); dup must not.
    /// </summary>
    public static void Backward(float* dgate, float* dup, float* dact, float* gate, float* up, long n)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(n);
        for (long i = 0; i < n; i++)
        {
            float g = gate[i], da = dact[i];
            float sigmoid = 1f / (1f + MathF.Exp(-g));
            dup[i] = da * g * sigmoid;
            dgate[i] = da * up[i] * sigmoid * (1f + g * (1f - sigmoid));
        }
    }

    /// <summary>Reference twin in double.</summary>
    public static void BackwardReference(float* dgate, float* dup, float* dact, float* gate, float* up, long n)
    {
        for (long i = 0; i < n; i++)
        {
            double g = gate[i], da = dact[i];
            double sigmoid = 1 / (1 + Math.Exp(-g));
            dup[i] = (float)(da * g * sigmoid);
            dgate[i] = (float)(da * up[i] * sigmoid * (1 + g * (1 - sigmoid)));
        }
    }
}
