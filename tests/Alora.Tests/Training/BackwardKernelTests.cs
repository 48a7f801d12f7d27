using Alora.Kernels;
using Alora.Tensors;
using Alora.Training;
using static Alora.Tests.Training.GradientCheck;

namespace Alora.Tests.Training;

/// <summary>
/// Each backward kernel against central differences of a float64 forward written here from the definition,
/// and against its scalar reference twin. The scalar objective is Σ R ⊙ forward(x) for a fixed random R,
/// whose gradient is exactly what backward(dy = R) returns.
/// </summary>
public sealed unsafe class BackwardKernelTests
{
    [Theory]
    [InlineData(1, 1)]
    [InlineData(3, 7)]
    [InlineData(5, 33)]
    [InlineData(4, 515)]
    public void CrossEntropyGradientMatchesFiniteDifferences(int m, int v)
    {
        double[] logits = RandomDoubles(m * v, 1, 3);
        var targets = Enumerable.Range(0, m).Select(i => i == 1 ? -100 : (i * 5 + 2) % v).ToArray();
        int count = targets.Count(t => t >= 0);
        float scale = 1f / Math.Max(1, count);
        double Loss(double[] x)
        {
            double total = 0;
            for (int i = 0; i < m; i++)
            {
                if (targets[i] < 0) continue;
                double max = x.Skip(i * v).Take(v).Max(), sum = 0;
                for (int j = 0; j < v; j++) sum += Math.Exp(x[i * v + j] - max);
                total += max + Math.Log(sum) - x[i * v + targets[i]];
            }
            return total * scale;
        }
        double[] numeric = Numeric(logits, Loss);

        float[] x32 = ToFloats(logits), losses = new float[m], lse = new float[m], dlogits = (float[])x32.Clone();
        float[] referenceGradient = new float[m * v], referenceLosses = new float[m];
        fixed (float* px = x32, pl = losses, plse = lse, pd = dlogits, prg = referenceGradient, prl = referenceLosses)
        fixed (int* pt = targets)
        {
            double total = CrossEntropy.Forward(pl, plse, px, pt, m, v);
            Assert.Equal(Loss(logits), total * scale, 5);
            CrossEntropy.Backward(pd, pd, plse, pt, m, v, scale);   // in place, the fused use
            CrossEntropy.ForwardBackwardReference(prg, prl, px, pt, m, v, scale);
        }
        AssertClose(numeric, dlogits, 1e-5, 1e-7, "dlogits vs finite differences");
        AssertClose(referenceGradient, dlogits, 1e-5, 1e-7, "dlogits vs reference twin");
        AssertClose(referenceLosses, losses, 1e-6, 1e-6, "losses vs reference twin");
        if (m > 1) Assert.All(dlogits.Skip(v).Take(v), g => Assert.Equal(0f, g));   // ignored row
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 5)]
    [InlineData(3, 40)]
    public void RmsNormGradientsMatchFiniteDifferences(int m, int d)
    {
        const float Eps = 1e-5f;
        double[] x = RandomDoubles(m * d, 2), gamma = RandomDoubles(d, 3), r = RandomDoubles(m * d, 4);
        double Objective(double[] xs, double[] g)
        {
            double total = 0;
            for (int i = 0; i < m; i++)
            {
                double ss = 0;
                for (int j = 0; j < d; j++) ss += xs[i * d + j] * xs[i * d + j];
                double inv = 1 / Math.Sqrt(ss / d + Eps);
                for (int j = 0; j < d; j++) total += r[i * d + j] * xs[i * d + j] * inv * g[j];
            }
            return total;
        }
        double[] numericX = Numeric(x, xs => Objective(xs, gamma));
        double[] numericGamma = Numeric(gamma, g => Objective(x, g));

        float[] x32 = ToFloats(x), g32 = ToFloats(gamma), r32 = ToFloats(r);
        float[] y = new float[m * d], inv = new float[m], dx = new float[m * d], dgamma = new float[d];
        float[] dxRef = new float[m * d], dgammaRef = new float[d], yRef = new float[m * d];
        fixed (float* px = x32, pg = g32, pr = r32, py = y, pinv = inv, pdx = dx, pdg = dgamma, pdxr = dxRef, pdgr = dgammaRef, pyr = yRef)
        {
            RmsNormTraining.Forward(py, pinv, px, pg, m, d, Eps);
            Elementwise.RmsNormReference(pyr, px, pg, m, d, Eps);
            RmsNormTraining.Backward(pdx, pdg, pr, px, pg, pinv, m, d);
            RmsNormTraining.BackwardReference(pdxr, pdgr, pr, px, pg, m, d, Eps);
        }
        AssertClose(yRef, y, 1e-6, 1e-6, "forward vs reference");
        AssertClose(numericX, dx, 1e-4, 1e-6, "dx vs finite differences");
        AssertClose(numericGamma, dgamma, 1e-4, 1e-6, "dγ vs finite differences");
        AssertClose(dxRef, dx, 1e-5, 1e-6, "dx vs reference twin");
        AssertClose(dgammaRef, dgamma, 1e-5, 1e-6, "dγ vs reference twin");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(37)]
    public void SiluMulGradientsMatchFiniteDifferences(int n)
    {
        double[] gate = RandomDoubles(n, 5, 4), up = RandomDoubles(n, 6, 2), r = RandomDoubles(n, 7);
        double Objective(double[] g, double[] u)
        {
            double total = 0;
            for (int i = 0; i < n; i++) total += r[i] * g[i] / (1 + Math.Exp(-g[i])) * u[i];
            return total;
        }
        double[] numericGate = Numeric(gate, g => Objective(g, up));
        double[] numericUp = Numeric(up, u => Objective(gate, u));
        float[] g32 = ToFloats(gate), u32 = ToFloats(up), r32 = ToFloats(r);
        float[] dgate = new float[n], dup = new float[n], dgateRef = new float[n], dupRef = new float[n];
        fixed (float* pg = g32, pu = u32, pr = r32, pdg = dgate, pdu = dup, pdgr = dgateRef, pdur = dupRef)
        {
            SiluMulTraining.Backward(pdg, pdu, pr, pg, pu, n);
            SiluMulTraining.BackwardReference(pdgr, pdur, pr, pg, pu, n);
        }
        AssertClose(numericGate, dgate, 1e-5, 1e-6, "dgate vs finite differences");
        AssertClose(numericUp, dup, 1e-5, 1e-6, "dup vs finite differences");
        AssertClose(dgateRef, dgate, 1e-5, 1e-7, "dgate vs reference twin");
        AssertClose(dupRef, dup, 1e-5, 1e-7, "dup vs reference twin");
    }

    [Theory]
    [InlineData(2, 1, 2)]
    [InlineData(5, 3, 8)]
    [InlineData(4, 2, 34)]
    public void RopeBackwardIsTheAdjointOfTheRotation(int m, int heads, int dh)
    {
        var table = RopeTable.Create(dh, 10000);
        int n = m * heads * dh;
        int[] positions = Enumerable.Range(0, m).Select(i => i * 7 + 3).ToArray();
        double[] x = RandomDoubles(n, 8), r = RandomDoubles(n, 9);
        // f(x) = Σ r ⊙ rope(x), with rope in double: rope is linear, so df/dx = ropeᵀ(r).
        double Objective(double[] xs)
        {
            double total = 0;
            for (int i = 0; i < m; i++)
                for (int h = 0; h < heads; h++)
                    for (int j = 0; j < dh / 2; j++)
                    {
                        double angle = positions[i] * table.InverseFrequencies[j];
                        int a = (i * heads + h) * dh + j, b = a + dh / 2;
                        total += r[a] * (xs[a] * Math.Cos(angle) - xs[b] * Math.Sin(angle)) + r[b] * (xs[b] * Math.Cos(angle) + xs[a] * Math.Sin(angle));
                    }
            return total;
        }
        double[] numeric = Numeric(x, Objective);
        float[] dx = ToFloats(r), dxRef = ToFloats(r), roundTrip = ToFloats(x);
        fixed (float* pd = dx, pdr = dxRef, prt = roundTrip)
        fixed (int* pp = positions)
        {
            RopeTraining.Backward(pd, pp, m, heads, table);
            RopeTraining.BackwardReference(pdr, pp, m, heads, table);
            Rope.Apply(prt, pp, m, heads, table);
            RopeTraining.Backward(prt, pp, m, heads, table);   // the inverse rotation undoes the forward
        }
        AssertClose(numeric, dx, 1e-5, 1e-6, "drope vs finite differences");
        AssertClose(dxRef, dx, 0, 0, "drope vs reference twin");
        AssertClose(x, roundTrip, 1e-5, 1e-6, "backward(forward(x)) vs x");
    }

    [Theory]
    [InlineData(1, 5, 2, 1, 4, 0, false)]
    [InlineData(1, 5, 2, 1, 4, 0, true)]
    [InlineData(2, 7, 4, 2, 8, 0, false)]
    [InlineData(2, 7, 4, 2, 8, 0, true)]
    [InlineData(2, 9, 6, 3, 5, 0, false)]
    [InlineData(1, 8, 4, 2, 4, 3, false)]
    [InlineData(1, 8, 4, 2, 4, 3, true)]
    [InlineData(1, 40, 2, 1, 16, 7, true)]
    public void AttentionGradientsMatchFiniteDifferences(int sequences, int length, int heads, int kvHeads, int dh, int window, bool split)
    {
        var shape = new CausalAttention.Shape
        {
            SequenceCount = sequences, Length = length, HeadCount = heads, KeyValueHeadCount = kvHeads,
            HeadDim = dh, Scale = 1f / MathF.Sqrt(dh), SlidingWindow = window,
        };
        int rows = sequences * length, qn = rows * heads * dh, kn = rows * kvHeads * dh;
        double[] q = RandomDoubles(qn, 10), k = RandomDoubles(kn, 11), v = RandomDoubles(kn, 12), r = RandomDoubles(qn, 13);
        double Objective(double[] qs, double[] ks, double[] vs)
        {
            double[] o = AttentionInDouble(qs, ks, vs, shape);
            double total = 0;
            for (int i = 0; i < o.Length; i++) total += r[i] * o[i];
            return total;
        }
        double[] numericQ = Numeric(q, qs => Objective(qs, k, v));
        double[] numericK = Numeric(k, ks => Objective(q, ks, v));
        double[] numericV = Numeric(v, vs => Objective(q, k, vs));

        float[] q32 = ToFloats(q), k32 = ToFloats(k), v32 = ToFloats(v), r32 = ToFloats(r);
        float[] output = new float[qn], lse = new float[rows * heads], dq = new float[qn], dk = new float[kn], dv = new float[kn];
        float[] outRef = new float[qn], dqRef = new float[qn], dkRef = new float[kn], dvRef = new float[kn];
        fixed (float* pq = q32, pk = k32, pv = v32, pr = r32, po = output, pl = lse, pdq = dq, pdk = dk, pdv = dv)
        fixed (float* por = outRef, pdqr = dqRef, pdkr = dkRef, pdvr = dvRef)
        {
            CausalAttention.Forward(po, pl, pq, pk, pv, shape);
            CausalAttention.Backward(pdq, pdk, pdv, pr, po, pl, pq, pk, pv, shape, split);
            CausalAttention.Reference(por, pq, pk, pv, pdqr, pdkr, pdvr, pr, shape);
        }
        AssertClose(AttentionInDouble(q, k, v, shape), output, 1e-5, 1e-6, "output vs double forward");
        AssertClose(numericQ, dq, 1e-4, 1e-6, "dq vs finite differences");
        AssertClose(numericK, dk, 1e-4, 1e-6, "dk vs finite differences");
        AssertClose(numericV, dv, 1e-4, 1e-6, "dv vs finite differences");
        AssertClose(outRef, output, 1e-5, 1e-6, "output vs reference twin");
        AssertClose(dqRef, dq, 1e-5, 1e-6, "dq vs reference twin");
        AssertClose(dkRef, dk, 1e-5, 1e-6, "dk vs reference twin");
        AssertClose(dvRef, dv, 1e-5, 1e-6, "dv vs reference twin");
    }

    /// <summary>Causal GQA attention in double from the definition ([B·T, H·Dh] layouts).</summary>
    private static double[] AttentionInDouble(double[] q, double[] k, double[] v, CausalAttention.Shape s)
    {
        int T = s.Length, dh = s.HeadDim, group = s.HeadCount / s.KeyValueHeadCount;
        var o = new double[q.Length];
        for (int b = 0; b < s.SequenceCount; b++)
            for (int h = 0; h < s.HeadCount; h++)
                for (int t = 0; t < T; t++)
                {
                    int first = s.SlidingWindow > 0 ? Math.Max(0, t - s.SlidingWindow + 1) : 0;
                    var scores = new double[t + 1];
                    double max = double.NegativeInfinity, sum = 0;
                    for (int j = first; j <= t; j++)
                    {
                        for (int d = 0; d < dh; d++)
                            scores[j] += q[((b * T + t) * s.HeadCount + h) * dh + d] * k[((b * T + j) * s.KeyValueHeadCount + h / group) * dh + d];
                        scores[j] *= s.Scale;
                        max = Math.Max(max, scores[j]);
                    }
                    for (int j = first; j <= t; j++) { scores[j] = Math.Exp(scores[j] - max); sum += scores[j]; }
                    for (int j = first; j <= t; j++)
                        for (int d = 0; d < dh; d++)
                            o[((b * T + t) * s.HeadCount + h) * dh + d] += scores[j] / sum * v[((b * T + j) * s.KeyValueHeadCount + h / group) * dh + d];
                }
        return o;
    }

    [Theory]
    [InlineData(DType.F32, 1, 1, 1)]
    [InlineData(DType.F32, 37, 70, 130)]
    [InlineData(DType.BF16, 5, 17, 9)]
    [InlineData(DType.F16, 40, 33, 200)]
    [InlineData(DType.BF16, 9, 300, 128)]
    public void FrozenLinearInputGradientIsTheAdjointOfTheForward(DType dtype, int m, int n, int k)
    {
        // y = x·Wᵀ is linear, so its finite-difference gradient is exact: the adjoint identity
        // Σ (x·Wᵀ)⊙dy = Σ x⊙(dy·W) is the gradient check; accumulate adds to what dx held.
        float[] w = Kernels.KernelTestData.Random(n * k, 14), dy = Kernels.KernelTestData.Random(m * n, 15), x = Kernels.KernelTestData.Random(m * k, 16);
        byte[] stored = Kernels.KernelTestData.Encode(w, dtype);
        float[] y = new float[m * n], dx = new float[m * k], accumulated = Kernels.KernelTestData.Random(m * k, 17), before = (float[])accumulated.Clone();
        Array.Fill(dx, float.NaN);
        fixed (byte* pw = stored)
        fixed (float* px = x, py = y, pdy = dy, pdx = dx, pa = accumulated)
        {
            var weight = new WeightMatrix(pw, dtype, n, k);
            LinearTraining.Forward(py, px, weight, null, m);
            LinearTraining.Backward(pdx, pdy, weight, m, accumulate: false);
            LinearTraining.Backward(pa, pdy, weight, m, accumulate: true);
        }
        double forwardSide = 0, backwardSide = 0, magnitude = 0;
        for (int i = 0; i < y.Length; i++) { forwardSide += (double)y[i] * dy[i]; magnitude += Math.Abs((double)y[i] * dy[i]); }
        for (int i = 0; i < x.Length; i++) backwardSide += (double)x[i] * dx[i];
        Assert.True(Math.Abs(forwardSide - backwardSide) <= 1e-5 * magnitude + 1e-6, $"<x·Wᵀ, dy> {forwardSide:R} vs <x, dy·W> {backwardSide:R}");
        AssertClose(before.Zip(dx, (b, d) => b + d).ToArray(), accumulated, 1e-5, 1e-6, "accumulated dx");
    }

    [Theory]
    [InlineData(1, 3, 2, 1)]
    [InlineData(6, 10, 7, 3)]
    [InlineData(37, 70, 66, 8)]
    public void LoraGradientsMatchFiniteDifferences(int m, int k, int n, int rank)
    {
        var config = TinyModel.Config();
        // A standalone module: the factors live in a TrainableLora only for its buffers.
        using var lora = new TrainableLora(config with { HiddenSize = k, HeadCount = 1, KeyValueHeadCount = 1, HeadDim = n, LayerCount = 1 }, ["k_proj"], rank, 1.5f);
        var module = lora.Modules[0];
        Assert.Equal((n, k), (module.OutFeatures, module.InFeatures));
        double[] x = RandomDoubles(m * k, 20), a = RandomDoubles(rank * k, 21), b = RandomDoubles(n * rank, 22), r = RandomDoubles(m * n, 23);
        double Objective(double[] xs, double[] aa, double[] bb)
        {
            double total = 0;
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                {
                    double y = 0;
                    for (int c = 0; c < rank; c++)
                    {
                        double u = 0;
                        for (int p = 0; p < k; p++) u += xs[i * k + p] * aa[c * k + p];
                        y += u * bb[j * rank + c];
                    }
                    total += r[i * n + j] * 1.5 * y;
                }
            return total;
        }
        // Finite differences on the small shapes; the large one (vector paths, task splits) against the twin only.
        bool finiteDifferences = m * k <= 100;
        double[]? numericX = finiteDifferences ? Numeric(x, xs => Objective(xs, a, b)) : null;
        double[]? numericA = finiteDifferences ? Numeric(a, aa => Objective(x, aa, b)) : null;
        double[]? numericB = finiteDifferences ? Numeric(b, bb => Objective(x, a, bb)) : null;
        ToFloats(a).CopyTo(module.AValues);
        ToFloats(b).CopyTo(module.BValues);
        float[] x32 = ToFloats(x), r32 = ToFloats(r), dx = new float[m * k], dxRef = new float[m * k];
        float[] u = new float[m * rank], g = new float[m * rank];
        fixed (float* px = x32, pr = r32, pdx = dx, pdxr = dxRef, pu = u, pg = g)
        {
            LinearTraining.LoraBackward(pdx, pr, px, module, m, pu, pg);
            float[] dA = module.AGradient.ToArray(), dB = module.BGradient.ToArray();
            if (finiteDifferences)
            {
                AssertClose(numericX, dx, 1e-5, 1e-6, "dx vs finite differences");
                AssertClose(numericA, dA, 1e-5, 1e-6, "dA vs finite differences");
                AssertClose(numericB, dB, 1e-5, 1e-6, "dB vs finite differences");
            }
            lora.ZeroGradients();
            LinearTraining.LoraBackwardReference(pdxr, pr, px, module, m);
            AssertClose(module.AGradient.ToArray(), dA, 1e-5, 1e-6, "dA vs reference twin");
            AssertClose(module.BGradient.ToArray(), dB, 1e-5, 1e-6, "dB vs reference twin");
            AssertClose(dxRef, dx, 1e-5, 1e-6, "dx vs reference twin");
        }
    }

    [Fact]
    public void ElementwiseBackwardsMatchTheirTwinsAtEveryLengthUpTo256()
    {
        for (int n = 0; n <= 256; n++)
        {
            float[] x = Kernels.KernelTestData.Random(2 * n, n + 1, 3), gamma = Kernels.KernelTestData.Random(n, n + 2), dy = Kernels.KernelTestData.Random(2 * n, n + 3);
            float[] dgate = new float[2 * n], dup = new float[2 * n], dgateRef = new float[2 * n], dupRef = new float[2 * n];
            float[] dx = new float[2 * n], dxRef = new float[2 * n], dgamma = new float[n], dgammaRef = new float[n], y = new float[2 * n], inv = new float[2];
            fixed (float* px = x, pg = gamma, pdy = dy, pdg = dgate, pdu = dup, pdgr = dgateRef, pdur = dupRef)
            fixed (float* pdx = dx, pdxr = dxRef, pgam = dgamma, pgamr = dgammaRef, py = y, pinv = inv)
            {
                SiluMulTraining.Backward(pdg, pdu, pdy, px, pg, n);
                SiluMulTraining.BackwardReference(pdgr, pdur, pdy, px, pg, n);
                if (n > 0)
                {
                    RmsNormTraining.Forward(py, pinv, px, pg, 2, n, 1e-5f);
                    RmsNormTraining.Backward(pdx, pgam, pdy, px, pg, pinv, 2, n);
                    RmsNormTraining.BackwardReference(pdxr, pgamr, pdy, px, pg, 2, n, 1e-5f);
                }
            }
            AssertClose(dgateRef, dgate, 1e-5, 1e-6, $"dgate at n {n}");
            AssertClose(dupRef, dup, 1e-5, 1e-6, $"dup at n {n}");
            AssertClose(dxRef, dx, 1e-4, 1e-5, $"RMSNorm dx at d {n}");
            AssertClose(dgammaRef, dgamma, 1e-4, 1e-5, $"RMSNorm dγ at d {n}");
        }
    }

    [Fact]
    public void CrossEntropyMatchesItsTwinAtEveryVocabularySizeUpTo256()
    {
        for (int v = 1; v <= 256; v++)
        {
            float[] logits = Kernels.KernelTestData.Random(3 * v, v, 5), losses = new float[3], lse = new float[3], dlogits = new float[3 * v];
            float[] lossesRef = new float[3], dlogitsRef = new float[3 * v];
            int[] targets = [v - 1, -100, v / 2];
            fixed (float* pl = logits, pls = losses, plse = lse, pd = dlogits, plr = lossesRef, pdr = dlogitsRef)
            fixed (int* pt = targets)
            {
                double total = CrossEntropy.Forward(pls, plse, pl, pt, 3, v);
                CrossEntropy.Backward(pd, pl, plse, pt, 3, v, 0.5f);
                double totalRef = CrossEntropy.ForwardBackwardReference(pdr, plr, pl, pt, 3, v, 0.5f);
                Assert.True(Math.Abs(total - totalRef) <= 1e-5 * Math.Max(1, Math.Abs(totalRef)), $"loss at V {v}: {total} vs {totalRef}");
            }
            AssertClose(dlogitsRef, dlogits, 1e-5, 1e-7, $"dlogits at V {v}");
        }
    }
}
