using Alora.Adapters;
using Alora.Formats;
using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;
using Alora.Tests.Training;

namespace Alora.Tests.Adapters;

/// <summary>PEFT's pissa and olora initialisations (the base becomes a residual) and the conversion back to a plain LoRA.</summary>
public sealed unsafe class MutatedInitTests
{
    private static readonly string[] AllProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    private static LoraConfig Config(string init, int rank = 3, bool rslora = false) => new()
    {
        R = rank, LoraAlpha = 6, UseRslora = rslora, TargetModules = AllProjections, InitLoraWeights = init,
        RankPattern = new Dictionary<string, int> { ["layers.1.mlp.down_proj"] = 2 },
        AlphaPattern = new Dictionary<string, double> { ["layers.0.self_attn.q_proj"] = 5 },
    };

    /// <summary>Every targeted projection as f64 [out, in], read before anything rewrites it.</summary>
    private static Dictionary<(int, string), double[]> Originals(ModelWeights weights)
    {
        var result = new Dictionary<(int, string), double[]>();
        for (int layer = 0; layer < weights.Config.LayerCount; layer++)
            foreach (string module in AllProjections)
                result[(layer, module)] = Read(weights.Layers[layer].Projection(module));
        return result;
    }

    private static double[] Read(in WeightMatrix matrix)
    {
        long count = (long)matrix.Rows * matrix.Cols;
        var floats = new float[count];
        fixed (float* target = floats) Alora.Kernels.Convert.ToSingle(target, matrix.Data, matrix.DType, count);
        return floats.Select(x => (double)x).ToArray();
    }

    [Theory]
    [InlineData("pissa", DType.F32)]
    [InlineData("olora", DType.F32)]
    [InlineData("pissa", DType.BF16)]
    [InlineData("olora", DType.BF16)]
    public void ResidualPlusAdapterIsTheOriginalWeight(string init, DType dtype)
    {
        using var weights = ModelWeights.CreateRandom(TinyModel.Config(), dtype, 7);
        var originals = Originals(weights);
        using var adapter = LoraAdapter.Create("init", Config(init), weights, 1);
        Assert.Equal(14, adapter.Modules.Count);
        foreach (var m in adapter.Modules)
        {
            var residual = Read(weights.Layers[m.Layer].Projection(m.Module));
            Assert.Equal(DType.F32, weights.Layers[m.Layer].Projection(m.Module).DType);
            var delta = m.DeltaWeight();
            var original = originals[(m.Layer, m.Module)];
            double worst = 0, moved = 0;
            for (int i = 0; i < original.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(residual[i] + delta[i] - original[i]));
                moved = Math.Max(moved, Math.Abs(delta[i]));
            }
            Assert.True(worst <= 1e-5, $"{m}: max |W' + s·B·A − W| = {worst:E2}");
            Assert.True(moved > 1e-3, $"{m}: the adapter took nothing out of W");
        }
    }

    [Fact]
    public void PissaHoldsTheTopSingularTriplets()
    {
        using var weights = TinyModel.Weights(seed: 9);
        var originals = Originals(weights);
        using var adapter = LoraAdapter.Create("pissa", Config("pissa"), weights, 1);
        foreach (var m in adapter.Modules)
        {
            int r = m.Rank, n = m.OutFeatures, k = m.InFeatures;
            float* a = (float*)m.A.Data, b = (float*)m.B.Data;
            var original = originals[(m.Layer, m.Module)];
            var residual = Read(weights.Layers[m.Layer].Projection(m.Module));
            // A's rows and B's columns: orthogonal, both with squared norm σ_j / s, σ descending.
            var sigma = new double[r];
            for (int p = 0; p < r; p++)
                for (int q = 0; q < r; q++)
                {
                    double rows = 0, cols = 0;
                    for (int i = 0; i < k; i++) rows += (double)a[p * k + i] * a[q * k + i];
                    for (int o = 0; o < n; o++) cols += (double)b[o * r + p] * b[o * r + q];
                    if (p == q)
                    {
                        Assert.Equal(rows, cols, 4);
                        sigma[p] = rows * m.Scaling;
                    }
                    else
                    {
                        Assert.True(Math.Abs(rows) < 1e-5 && Math.Abs(cols) < 1e-5, $"{m}: factors {p}, {q} are not orthogonal ({rows:E2}, {cols:E2})");
                    }
                }
            for (int j = 1; j < r; j++) Assert.True(sigma[j] <= sigma[j - 1] * (1 + 1e-6), $"{m}: σ not descending");
            // Reference by power iteration: σ₁(W) is the first, and the residual's top singular value is σ_{r+1} ≤ σ_r.
            double top = PowerIterationSigma(original, n, k), residualTop = PowerIterationSigma(residual, n, k);
            Assert.True(Math.Abs(top - sigma[0]) <= 1e-4 * top, $"{m}: σ₁ {sigma[0]:R} vs power iteration {top:R}");
            Assert.True(residualTop <= sigma[r - 1] * (1 + 1e-4), $"{m}: the residual keeps σ {residualTop:R} > σ_r {sigma[r - 1]:R}");
            // Frobenius: Σσ² of the adapter + ‖residual‖² = ‖W‖² (the SVD splits W orthogonally).
            double total = original.Sum(x => x * x), rest = residual.Sum(x => x * x), kept = sigma.Sum(x => x * x);
            Assert.True(Math.Abs(total - rest - kept) <= 1e-4 * total, $"{m}: ‖W‖² {total:R} vs Σσ² {kept:R} + ‖W'‖² {rest:R}");
        }
    }

    private static double PowerIterationSigma(double[] w, int rows, int cols)
    {
        var v = Enumerable.Range(0, cols).Select(i => 1.0 + 0.01 * i).ToArray();
        double sigma = 0;
        for (int iteration = 0; iteration < 3000; iteration++)
        {
            var u = new double[rows];
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++) u[o] += w[o * cols + i] * v[i];
            var next = new double[cols];
            for (int o = 0; o < rows; o++)
                for (int i = 0; i < cols; i++) next[i] += w[o * cols + i] * u[o];
            double norm = Math.Sqrt(next.Sum(x => x * x));
            if (norm == 0) return 0;
            for (int i = 0; i < cols; i++) v[i] = next[i] / norm;
            sigma = Math.Sqrt(norm);
        }
        return sigma;
    }

    [Fact]
    public void OloraIsTheFirstColumnsOfAHouseholderQr()
    {
        using var weights = TinyModel.Weights(seed: 11);
        var originals = Originals(weights);
        using var adapter = LoraAdapter.Create("olora", Config("olora"), weights, 1);
        foreach (var m in adapter.Modules)
        {
            int r = m.Rank, n = m.OutFeatures, k = m.InFeatures;
            float* a = (float*)m.A.Data, b = (float*)m.B.Data;
            var w = originals[(m.Layer, m.Module)];
            // B = Q[:, :r] has orthonormal columns; A = R[:r, :] is upper triangular; Q·R reproduces W's first r columns.
            for (int p = 0; p < r; p++)
                for (int q = 0; q < r; q++)
                {
                    double dot = 0;
                    for (int o = 0; o < n; o++) dot += (double)b[o * r + p] * b[o * r + q];
                    Assert.True(Math.Abs(dot - (p == q ? 1 : 0)) < 1e-5, $"{m}: QᵀQ[{p},{q}] = {dot:R}");
                }
            for (int t = 0; t < r; t++)
                for (int j = 0; j < t; j++) Assert.Equal(0f, a[t * k + j]);
            for (int o = 0; o < n; o++)
                for (int j = 0; j < r; j++)
                {
                    double product = 0;
                    for (int t = 0; t < r; t++) product += (double)b[o * r + t] * a[t * k + j];
                    Assert.True(Math.Abs(product - w[o * k + j]) < 1e-5, $"{m}: (Q·R)[{o},{j}] = {product:R}, W = {w[o * k + j]:R}");
                }
            // LAPACK's signs (torch.linalg.qr): R[0,0] = −sign(W[0,0])·‖W[:,0]‖.
            double columnNorm = Math.Sqrt(Enumerable.Range(0, n).Sum(o => w[o * k] * w[o * k]));
            Assert.Equal(-Math.Sign(w[0]) * columnNorm, a[0], 4);
        }
    }

    [Theory]
    [InlineData("pissa")]
    [InlineData("olora")]
    public void LogitsRightAfterInitAreTheBaseModels(string init)
    {
        using var original = TinyModel.Weights(seed: 4, family: "qwen2");
        using var mutated = TinyModel.Weights(seed: 4, family: "qwen2");
        using var adapter = LoraAdapter.Create(init, Config(init), mutated, 2);
        int[] tokens = TinyModel.Tokens(12, 5);
        var expected = Logits(original, null, tokens);
        var actual = Logits(mutated, adapter.AsForwardAdapter(), tokens);
        var withoutAdapter = Logits(mutated, null, tokens);
        double worst = 0, residualOnly = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(expected[i] - actual[i]));
            residualOnly = Math.Max(residualOnly, Math.Abs(expected[i] - withoutAdapter[i]));
        }
        Assert.True(worst <= 1e-4, $"{init}: max |logit difference| {worst:E2}");
        Assert.True(residualOnly > 1e-3, $"{init}: the residual model alone should differ from the base ({residualOnly:E2})");
    }

    private static float[] Logits(ModelWeights weights, ForwardAdapter? adapter, int[] tokens)
    {
        using var model = new DecoderModel(weights, maxBatchTokens: 64);
        using var cache = model.CreateCache(tokens.Length + 16);
        using var sequence = new KvSequence(cache);
        var logits = new float[tokens.Length * model.VocabSize];
        model.Forward([new SequenceChunk(sequence, tokens, LogitRows.All, adapter, 0)], logits);
        return logits;
    }

    [Theory]
    [InlineData("pissa", false)]
    [InlineData("olora", true)]
    public void ConversionGivesAPlainLoraOfTheOriginalBase(string init, bool rslora)
    {
        using var weights = TinyModel.Weights(seed: 6);
        var originals = Originals(weights);
        var config = Config(init, rslora: rslora);
        using var trained = LoraAdapter.Create("t", config, weights, 3);
        using var initial = trained.Copy("initial");
        var random = new Random(8);
        foreach (var m in trained.Modules)   // stands for training: the factors move away from their init
        {
            foreach (ref float x in m.AValues) x += (float)(random.NextDouble() - 0.5) * 0.2f;
            foreach (ref float x in m.BValues) x += (float)(random.NextDouble() - 0.5) * 0.2f;
        }
        using var converted = trained.ToPlainLora(initial, "converted");
        Assert.Equal("true", converted.Config.InitLoraWeights);
        Assert.Equal(2 * config.R, converted.Config.R);
        Assert.Equal(config.LoraAlpha * (rslora ? Math.Sqrt(2) : 2), converted.Config.LoraAlpha, 12);
        foreach (var m in trained.Modules)
        {
            var c = converted.Get(m.Layer, m.Module)!;
            Assert.Equal(2 * m.Rank, c.Rank);
            Assert.Equal(m.Scaling, c.Scaling, 5);
            // W + ΔW_converted must equal the residual + the trained adapter.
            var residual = Read(weights.Layers[m.Layer].Projection(m.Module));
            var trainedDelta = m.DeltaWeight();
            var convertedDelta = c.DeltaWeight();
            var original = originals[(m.Layer, m.Module)];
            for (int i = 0; i < original.Length; i++)
                Assert.True(Math.Abs(original[i] + convertedDelta[i] - (residual[i] + trainedDelta[i])) <= 2e-5, $"{m}: element {i}");
        }
        // It saves and loads as a plain LoRA of the original base.
        string folder = Path.Combine(Path.GetTempPath(), "alora-mutated-" + Guid.NewGuid().ToString("N"));
        try
        {
            converted.Save(folder);
            using var loaded = LoraAdapter.Load(folder, weights.Config);
            Assert.Equal(converted.ParameterCount, loaded.ParameterCount);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void RefusesWhatItCannotDoExactly()
    {
        using var weights = TinyModel.Weights();
        var niter = Assert.Throws<ModelFormatException>(() => LoraAdapter.Create("x", Config("pissa_niter_4"), weights, 1));
        Assert.Contains("pissa_niter_4", niter.Message, StringComparison.Ordinal);
        // r above min(out, in) of k_proj [8, 16].
        var rank = Assert.Throws<ModelFormatException>(() => LoraAdapter.Create("x", Config("olora", rank: 9), weights, 1));
        Assert.Contains("r ≤ 8", rank.Message, StringComparison.Ordinal);
        // An aLoRA's prefix is the base model's: a residual base would change it.
        var alora = Assert.Throws<ModelFormatException>(() => LoraAdapter.Create("x", Config("pissa") with { AloraInvocationTokens = [5, 6] }, weights, 1));
        Assert.Contains("aLoRA", alora.Message, StringComparison.Ordinal);
        // Without the base weights the plain overload refuses them (Validate).
        Assert.Throws<ModelFormatException>(() => LoraAdapter.Create("x", Config("pissa"), weights.Config, 1));
    }
}
