using Alora.Formats;
using Alora.Kernels;
using Alora.Models;

namespace Alora.Adapters;

// Legend: out/in = a projection's output/input features, r = the module's rank, s = its scaling.
// W is the base projection weight [out, in], row-major.

/// <summary>
/// PEFT's initialisations that rewrite the base weights (PiSSA, OLoRA), and PEFT's conversion of an adapter
/// trained from them back to a plain LoRA of the original base model (save_pretrained with
/// path_initial_model_for_weight_conversion).
/// </summary>
public sealed unsafe partial class LoraAdapter
{
    /// <summary>The init_lora_weights values that move part of W into the adapter (the base becomes a residual).</summary>
    public static bool RewritesBaseWeights(string initLoraWeights) => initLoraWeights is "pissa" or "olora" || initLoraWeights.StartsWith("pissa_niter_", StringComparison.Ordinal);

    /// <summary>
    /// A new adapter initialised as PEFT does, including the initialisations that need the base weights:
    /// <list type="bullet">
    /// <item>"pissa": W = U·S·Vᵀ (full SVD), A = diag(√(S_r/s))·V_rᵀ, B = U_r·diag(√(S_r/s)), so s·B·A is W's top-r part;</item>
    /// <item>"olora": W = Q·R (Householder QR, LAPACK's signs), A = R[:r, :], B = Q[:, :r], unscaled.</item>
    /// </list>
    /// For both, every targeted projection of <paramref name="baseWeights"/> becomes a writable f32 copy holding the
    /// residual W − s·B·A, so the model's output right after init is the base model's. Other values behave as
    /// <see cref="Create(string, LoraConfig, ModelConfig, int)"/> and leave the weights untouched.
    /// "pissa_niter_K" (PEFT's randomized SVD, whose result depends on torch's random stream) is refused.
    /// </summary>
    public static LoraAdapter Create(string name, LoraConfig config, ModelWeights baseWeights, int seed)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(baseWeights);
        if (!RewritesBaseWeights(config.InitLoraWeights))
        {
            var created = CreateFactors(name, config, baseWeights.Config, seed);
            if (config.UseDora) created.InitializeMagnitudes(baseWeights);
            return created;
        }
        string source = $"adapter '{name}'";
        if (config.InitLoraWeights != "pissa" && config.InitLoraWeights != "olora")
            throw new ModelFormatException(
                $"{source}: init_lora_weights \"{config.InitLoraWeights}\": PEFT's randomized-SVD PiSSA draws torch's random stream and cannot be reproduced exactly; use \"pissa\" (full SVD) or \"olora\"");
        // Every other field is checked as for a plain LoRA (Validate refuses base-rewriting inits on load).
        (config with { InitLoraWeights = "true" }).Validate(source);
        if (config.IsActivated)
            throw new ModelFormatException(
                $"{source}: init_lora_weights \"{config.InitLoraWeights}\" with an aLoRA (alora_invocation_tokens set): the tokens before the invocation are computed by the base model alone, " +
                "and pissa/olora would replace it by a residual (and break the base model's KV-cache reuse); use init_lora_weights true or gaussian for an aLoRA");
        var baseConfig = baseWeights.Config;
        var adapter = Allocate(name, null, config, baseConfig, CheckInvocation(config, baseConfig, source), 0, TargetedModules(config, baseConfig, source));
        try
        {
            foreach (var m in adapter._modules)
            {
                if (m.Rank > Math.Min(m.OutFeatures, m.InFeatures))
                    throw new ModelFormatException(
                        $"{source}: {config.InitLoraWeights} on layer {m.Layer} {m.Module} [{m.OutFeatures}, {m.InFeatures}] needs r ≤ {Math.Min(m.OutFeatures, m.InFeatures)}, got r = {m.Rank}");
                ref WeightMatrix weight = ref baseWeights.WritableProjection(m.Layer, m.Module);
                var w = new double[(long)m.OutFeatures * m.InFeatures];   // [out, in]
                float* original = (float*)weight.Data;
                for (long i = 0; i < w.LongLength; i++) w[i] = original[i];
                var (b, a) = config.InitLoraWeights == "pissa"
                    ? PissaFactors(w, m.OutFeatures, m.InFeatures, m.Rank, m.Scaling)
                    : OloraFactors(w, m.OutFeatures, m.InFeatures, m.Rank);
                Span<float> factorA = m.AValues, factorB = m.BValues;
                for (int i = 0; i < a.Length; i++) factorA[i] = (float)a[i];
                for (int i = 0; i < b.Length; i++) factorB[i] = (float)b[i];
                // The residual, from the f32 factors the adapter really holds, so W' + s·B·A reproduces W.
                float* residual = original;
                for (int o = 0; o < m.OutFeatures; o++)
                    for (int i = 0; i < m.InFeatures; i++)
                    {
                        double product = 0;
                        for (int t = 0; t < m.Rank; t++) product += (double)factorB[o * m.Rank + t] * factorA[t * m.InFeatures + i];
                        long index = (long)o * m.InFeatures + i;
                        residual[index] = (float)(w[index] - m.Scaling * product);
                    }
            }
            // DoRA after pissa/olora: PEFT initialises m from the residual plus s·B·A, i.e. from W itself.
            if (config.UseDora) adapter.InitializeMagnitudes(baseWeights);
        }
        catch
        {
            adapter.Dispose();
            throw;
        }
        return adapter;
    }

    /// <summary>
    /// PiSSA: B [out, r] = U_r·diag(√(σ/s)), A [r, in] = diag(√(σ/s))·V_rᵀ from the SVD of W. The SVD: M = W or Wᵀ
    /// (whichever is tall, p × q), M = Q·R (Householder), then one-sided Jacobi on Rᵀ = V·S·U_Rᵀ, which is q × q
    /// and, QR-preconditioned, needs fewer sweeps than Jacobi on M itself; M's left vectors are Q·U_R.
    /// </summary>
    internal static (double[] B, double[] A) PissaFactors(double[] w, int outFeatures, int inFeatures, int rank, double scaling)
    {
        var b = new double[(long)outFeatures * rank];
        var a = new double[(long)rank * inFeatures];
        bool tall = outFeatures >= inFeatures;
        int p = tall ? outFeatures : inFeatures, q = tall ? inFeatures : outFeatures;
        var m = tall ? w : LowRankSvd.Transpose(w, outFeatures, inFeatures);   // [p, q]
        var (qFactor, r) = LowRankSvd.ThinQr(m, p, q);                          // [p, q], [q, q]
        // Jacobi on Rᵀ: its scaled columns are σ·(M's right vectors), its rotation columns R's left vectors U_R.
        var (scaledRight, leftOfR, order) = LowRankSvd.Jacobi(LowRankSvd.Transpose(r, q, q), q, q);
        var mLeft = new double[p];
        for (int j = 0; j < rank; j++)
        {
            int c = order[j];
            double sigma = Math.Sqrt(scaledRight[c].Sum(x => x * x));
            double root = Math.Sqrt(sigma / scaling);
            for (int i = 0; i < p; i++)
            {
                double sum = 0;
                for (int t = 0; t < q; t++) sum += qFactor[(long)i * q + t] * leftOfR[c][t];
                mLeft[i] = sum;
            }
            // tall: u = M's left, v = M's right; wide (M = Wᵀ): the other way round.
            for (int o = 0; o < outFeatures; o++)
                b[(long)o * rank + j] = sigma == 0 ? 0 : (tall ? mLeft[o] : scaledRight[c][o] / sigma) * root;
            for (int i = 0; i < inFeatures; i++)
                a[(long)j * inFeatures + i] = sigma == 0 ? 0 : (tall ? scaledRight[c][i] / sigma : mLeft[i]) * root;
        }
        return (b, a);
    }

    /// <summary>
    /// OLoRA: the first r Householder steps of W's QR (the later ones change neither Q[:, :r] nor R[:r, :]):
    /// B [out, r] = Q[:, :r], A [r, in] = R[:r, :]. The reflector maps a column x to −sign(x₀)·‖x‖·e₀, LAPACK's
    /// (and so torch.linalg.qr's) sign choice.
    /// </summary>
    internal static (double[] B, double[] A) OloraFactors(double[] w, int outFeatures, int inFeatures, int rank)
    {
        var work = (double[])w.Clone();   // [out, in], its first r rows become R[:r, :]
        var reflectors = new double[rank][];
        for (int k = 0; k < rank; k++)
        {
            var x = new double[outFeatures - k];
            for (int i = k; i < outFeatures; i++) x[i - k] = work[(long)i * inFeatures + k];
            double norm = Math.Sqrt(x.Sum(v => v * v));
            if (norm != 0)
            {
                x[0] += x[0] >= 0 ? norm : -norm;
                double vNorm = Math.Sqrt(x.Sum(v => v * v));
                for (int i = 0; i < x.Length; i++) x[i] /= vNorm;
            }
            reflectors[k] = x;   // H_k = I − 2·x·xᵀ on rows k…; x = 0: H_k = I
            for (int j = 0; j < inFeatures; j++)
            {
                double dot = 0;
                for (int i = k; i < outFeatures; i++) dot += x[i - k] * work[(long)i * inFeatures + j];
                for (int i = k; i < outFeatures; i++) work[(long)i * inFeatures + j] -= 2 * dot * x[i - k];
            }
        }
        var a = new double[(long)rank * inFeatures];
        for (int t = 0; t < rank; t++)
            for (int j = t; j < inFeatures; j++) a[(long)t * inFeatures + j] = work[(long)t * inFeatures + j];   // below the diagonal: 0
        // Q[:, :r] = H_0·…·H_{r−1} applied to the first r columns of the identity.
        var b = new double[(long)outFeatures * rank];
        for (int j = 0; j < rank; j++) b[(long)j * rank + j] = 1;
        for (int k = rank - 1; k >= 0; k--)
        {
            var x = reflectors[k];
            for (int j = 0; j < rank; j++)
            {
                double dot = 0;
                for (int i = k; i < outFeatures; i++) dot += x[i - k] * b[(long)i * rank + j];
                for (int i = k; i < outFeatures; i++) b[(long)i * rank + j] -= 2 * dot * x[i - k];
            }
        }
        return (b, a);
    }

    /// <summary>A copy of this adapter's factors and config under another name (e.g. the initial PiSSA/OLoRA factors, kept for the conversion).</summary>
    public LoraAdapter Copy(string name)
    {
        var copy = Allocate(name, SourcePath, Config, BaseConfig, InvocationTokens, ActivationShift, _modules.Select(m => (m.Layer, m.Module, m.Rank)).ToList());
        for (int i = 0; i < _modules.Length; i++)
        {
            _modules[i].AValues.CopyTo(copy._modules[i].AValues);
            _modules[i].BValues.CopyTo(copy._modules[i].BValues);
            _modules[i].MagnitudeValues.CopyTo(copy._modules[i].MagnitudeValues);
        }
        return copy;
    }

    /// <summary>
    /// PEFT's conversion of an adapter trained from a base-rewriting init (pissa/olora) into a plain LoRA of the
    /// original base model: W' + s·B·A = W + s·(B·A − B₀·A₀), so the converted module has rank 2r with
    /// A = [A; A₀] and B = [B, −B₀] and the same scaling (r and every rank_pattern entry doubled; lora_alpha and
    /// alpha_pattern × 2, or × √2 with use_rslora so that alpha/√r is kept). init_lora_weights becomes true.
    /// </summary>
    /// <param name="initial">The adapter right after <see cref="Create(string, LoraConfig, ModelWeights, int)"/> (same modules).</param>
    public LoraAdapter ToPlainLora(LoraAdapter initial, string name)
    {
        ArgumentNullException.ThrowIfNull(initial);
        if (IsDora)
            throw new InvalidOperationException(
                $"adapter '{Name}' is a DoRA adapter: the pissa/olora conversion to a plain LoRA of the original base (W' + s·B·A = W + s·(B·A − B₀·A₀)) does not hold once the magnitude rescales W' + s·B·A, so PEFT's conversion does not apply; save it with the residual base model instead");
        if (initial._modules.Length != _modules.Length)
            throw new ArgumentException($"the initial adapter has {initial._modules.Length} modules, the trained one {_modules.Length}", nameof(initial));
        double alphaFactor = Config.UseRslora ? Math.Sqrt(2) : 2;
        var config = Config with
        {
            InitLoraWeights = "true",
            R = 2 * Config.R,
            LoraAlpha = alphaFactor * Config.LoraAlpha,
            RankPattern = Config.RankPattern.ToDictionary(kv => kv.Key, kv => 2 * kv.Value),
            // PEFT doubles alpha_pattern even with rsLoRA, which would change those modules' scaling; Alora keeps it.
            AlphaPattern = Config.AlphaPattern.ToDictionary(kv => kv.Key, kv => alphaFactor * kv.Value),
        };
        var converted = Allocate(name, null, config, BaseConfig, InvocationTokens, ActivationShift, _modules.Select(m => (m.Layer, m.Module, 2 * m.Rank)).ToList());
        for (int i = 0; i < _modules.Length; i++)
        {
            LoraModule trained = _modules[i], start = initial._modules[i], target = converted._modules[i];
            if (start.Layer != trained.Layer || start.Module != trained.Module || start.Rank != trained.Rank)
                throw new ArgumentException($"the initial adapter's module {i} is layer {start.Layer} {start.Module} r = {start.Rank}; the trained one's is layer {trained.Layer} {trained.Module} r = {trained.Rank}", nameof(initial));
            int r = trained.Rank, k = trained.InFeatures;
            trained.AValues.CopyTo(target.AValues);                                   // rows 0..r−1: A
            start.AValues.CopyTo(target.AValues[(r * k)..]);                          // rows r..2r−1: A₀
            for (int o = 0; o < trained.OutFeatures; o++)
                for (int t = 0; t < r; t++)
                {
                    target.BValues[o * 2 * r + t] = trained.BValues[o * r + t];        // columns 0..r−1: B
                    target.BValues[o * 2 * r + r + t] = -start.BValues[o * r + t];    // columns r..2r−1: −B₀
                }
            if (Math.Abs(target.Scaling - trained.Scaling) > 1e-6f * Math.Abs(trained.Scaling))
                throw new InvalidOperationException($"layer {trained.Layer} {trained.Module}: the converted scaling {target.Scaling} differs from {trained.Scaling}");
        }
        return converted;
    }
}
