using System.Text.RegularExpressions;
using Alora.Models;

namespace Alora.Adapters;

// Legend: wᵢ = the caller's weight, sᵢ = adapter i's scaling of the module, rᵢ = its rank there.

/// <summary>
/// PEFT's add_weighted_adapter for LoRA (peft/tuners/lora/model.py), every combination type:
/// <list type="bullet">
/// <item>linear, ties, dare_linear, dare_ties, magnitude_prune: the lora_A tensors and the lora_B tensors are combined
/// separately by <see cref="TaskArithmetic"/>, A with weights sign(wᵢsᵢ)·√|wᵢsᵢ| and B with √|wᵢsᵢ| (the sign goes on
/// A only, so a negative weight negates ΔW); these need equal ranks. Not the sum of the ΔWᵢ: B·A has cross terms.</item>
/// <item>cat: A = [wᵢsᵢ·Aᵢ stacked by rows], B = [Bᵢ side by side], so B·A = Σ wᵢsᵢ·Bᵢ·Aᵢ exactly; rank Σ rᵢ.</item>
/// <item>svd, ties_svd, dare_linear_svd, dare_ties_svd, magnitude_prune_svd: the full ΔWᵢ = sᵢ·Bᵢ·Aᵢ are combined with
/// weights wᵢ (svd: Σ wᵢ·ΔWᵢ), then truncated by SVD to svdRank (default: the largest rank): B = U·S, A = Vᵀ,
/// optionally clamped to ± the svd_clamp quantile of their entries.</item>
/// </list>
/// The new adapter has lora_alpha = r (scaling 1, no rsLoRA), as PEFT sets it; a module present in only some
/// adapters combines those. One adapter alone is always combined linearly, as in PEFT.
/// </summary>
public static class AdapterCombination
{
    /// <summary>PEFT's combination types.</summary>
    public static readonly IReadOnlyList<string> Types =
        ["svd", "linear", "cat", "ties", "ties_svd", "dare_ties", "dare_linear", "dare_ties_svd", "dare_linear_svd", "magnitude_prune", "magnitude_prune_svd"];

    public static LoraAdapter AddWeighted(IReadOnlyList<(LoraAdapter Adapter, double Weight)> adapters, string combinationType, string newName, int? svdRank = null)
        => AddWeighted(adapters, combinationType, newName, new CombinationOptions { SvdRank = svdRank });

    public static LoraAdapter AddWeighted(IReadOnlyList<(LoraAdapter Adapter, double Weight)> adapters, string combinationType, string newName, CombinationOptions options)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(combinationType);
        ArgumentNullException.ThrowIfNull(newName);
        ArgumentNullException.ThrowIfNull(options);
        if (adapters.Count == 0) throw new ArgumentException("add_weighted_adapter needs at least one adapter", nameof(adapters));
        string type = combinationType.ToLowerInvariant();
        if (!Types.Contains(type))
            throw new ArgumentException($"combination type '{combinationType}' is not supported; expected one of {string.Join(", ", Types)}", nameof(combinationType));
        if (adapters.Count == 1) type = "linear";
        options.Validate(type);
        int? svdRank = options.SvdRank;

        var first = adapters[0].Adapter;
        foreach (var (adapter, weight) in adapters)
        {
            LoraMerge.RefuseActivated(adapter, "be combined");
            if (adapter.IsDora)
                throw new ArgumentException(
                    $"adapter '{adapter.Name}' is a DoRA adapter (use_dora): add_weighted_adapter combines only lora_A/lora_B, and a weighted sum of DoRA magnitude vectors has no meaning for the combined direction; merge it (LoraMerge) or serve it alongside instead", nameof(adapters));
            LoraMerge.CheckBaseShapes(first.BaseConfig, adapter, $"the base model of adapter '{first.Name}'");
            if (adapter.BaseConfig.LayerCount != first.BaseConfig.LayerCount)
                throw new ArgumentException($"adapters '{first.Name}' and '{adapter.Name}' were loaded for base models with {first.BaseConfig.LayerCount} and {adapter.BaseConfig.LayerCount} layers");
            if (!double.IsFinite(weight)) throw new ArgumentException($"weight {weight} of adapter '{adapter.Name}' is not finite", nameof(adapters));
        }
        if (adapters.Select(a => a.Adapter.Config.TargetModulesRegex is null).Distinct().Count() > 1)
            throw new ArgumentException("all adapters must give target_modules the same way: a mix of lists and regular expressions cannot be combined (as in PEFT)", nameof(adapters));

        // The union of the modules, in layer then module order.
        var keys = adapters.SelectMany(a => a.Adapter.Modules.Select(m => (m.Layer, m.Module))).Distinct()
            .OrderBy(k => k.Layer).ThenBy(k => LoraConfig.ModuleIndex(k.Module)).ToList();

        // PEFT's rank of an adapter: r, or the largest rank_pattern value when that is larger.
        int AdapterRank(LoraAdapter a) => a.Config.RankPattern.Count == 0 ? a.Config.R : Math.Max(a.Config.R, a.Config.RankPattern.Values.Max());
        int globalRank;
        var ranks = new Dictionary<(int, string), int>();
        bool svd = type.EndsWith("svd", StringComparison.Ordinal);
        if (type == "cat")
        {
            globalRank = adapters.Sum(a => AdapterRank(a.Adapter));
            foreach (var key in keys) ranks[key] = Present(adapters, key).Sum(p => p.Module.Rank);
        }
        else if (svd)
        {
            globalRank = svdRank ?? adapters.Max(a => AdapterRank(a.Adapter));
            foreach (var key in keys) ranks[key] = globalRank;
        }
        else
        {
            var configRanks = adapters.Select(a => AdapterRank(a.Adapter)).Distinct().ToList();
            if (configRanks.Count != 1)
                throw new ArgumentException($"{type} combination needs adapters of the same rank r; found r = {string.Join(", ", adapters.Select(a => $"{AdapterRank(a.Adapter)} ('{a.Adapter.Name}')"))} (use cat or an svd type)", nameof(adapters));
            globalRank = configRanks[0];
            foreach (var key in keys)
            {
                var moduleRanks = Present(adapters, key).Select(p => p.Module.Rank).Distinct().ToList();
                if (moduleRanks.Count != 1)
                    throw new ArgumentException($"{type} combination needs equal ranks; {LoraConfig.ModuleKey(key.Layer, key.Module)} has ranks {string.Join(", ", moduleRanks)} (use cat or an svd type)", nameof(adapters));
                ranks[key] = moduleRanks[0];
            }
        }

        var config = NewConfig(adapters, keys, ranks, globalRank, first.BaseConfig);
        var shapes = keys.Select(k => (k.Layer, k.Module, ranks[k])).ToList();
        var result = LoraAdapter.Allocate(newName, null, config, first.BaseConfig, null, 0, shapes);
        try
        {
            foreach (var target in result.Modules)
            {
                var parts = Present(adapters, (target.Layer, target.Module)).ToList();
                if (type == "cat") Concatenate(target, parts);
                else if (svd) Svd(type, target, parts, options);
                else TaskArithmeticAB(type, target, parts, options);
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private static IEnumerable<(LoraModule Module, double Weight, int Index)> Present(IReadOnlyList<(LoraAdapter Adapter, double Weight)> adapters, (int Layer, string Module) key)
    {
        for (int i = 0; i < adapters.Count; i++)
            if (adapters[i].Adapter.Get(key.Layer, key.Module) is { } module) yield return (module, adapters[i].Weight, i);
    }

    /// <summary>DARE's masks for one module's tensor: the caller's (tests) or the seeded generator's.</summary>
    private static Func<int, bool[]> Masks(CombinationOptions options, LoraModule target, string tensor, List<(LoraModule Module, double Weight, int Index)> parts, int length)
        => i =>
        {
            var request = new DareMaskRequest(target.Layer, target.Module, tensor, parts[i].Index, length);
            if (options.DareMask is { } provider) return provider(request);
            ulong key = ((ulong)(uint)target.Layer << 32) | ((ulong)(uint)LoraConfig.ModuleIndex(target.Module) << 16)
                | ((ulong)(tensor switch { "lora_A" => 0u, "lora_B" => 1u, _ => 2u }) << 8) | (uint)parts[i].Index;
            return TaskArithmetic.DareMask(options.Seed, key, length, options.Density ?? 1);
        };

    /// <summary>linear, ties, dare_linear, dare_ties, magnitude_prune: A and B combined separately, in f64, rounded once.</summary>
    private static void TaskArithmeticAB(string type, LoraModule target, List<(LoraModule Module, double Weight, int Index)> parts, CombinationOptions options)
    {
        var weightsA = new double[parts.Count];
        var weightsB = new double[parts.Count];
        for (int i = 0; i < parts.Count; i++)
        {
            double product = parts[i].Weight * parts[i].Module.Scaling;
            weightsB[i] = Math.Sqrt(Math.Abs(product));
            weightsA[i] = product >= 0 ? weightsB[i] : -weightsB[i];
        }
        var a = TaskArithmetic.Combine(type, parts.Select(p => ToDouble(p.Module.AValues)).ToList(), weightsA, options.Density, options.MajoritySignMethod,
            Masks(options, target, "lora_A", parts, target.AValues.Length));
        var b = TaskArithmetic.Combine(type, parts.Select(p => ToDouble(p.Module.BValues)).ToList(), weightsB, options.Density, options.MajoritySignMethod,
            Masks(options, target, "lora_B", parts, target.BValues.Length));
        CopyTo(target.AValues, a);
        CopyTo(target.BValues, b);
    }

    private static double[] ToDouble(ReadOnlySpan<float> values)
    {
        var result = new double[values.Length];
        for (int i = 0; i < values.Length; i++) result[i] = values[i];
        return result;
    }

    private static void CopyTo(Span<float> target, double[] values)
    {
        for (int i = 0; i < target.Length; i++) target[i] = (float)values[i];
    }

    private static void Concatenate(LoraModule target, List<(LoraModule Module, double Weight, int Index)> parts)
    {
        var a = target.AValues;   // [R, in]
        var b = target.BValues;   // [out, R]
        int offset = 0;
        foreach (var (module, weight, _) in parts)
        {
            float factor = (float)(weight * module.Scaling);
            var sourceA = module.AValues;
            for (int i = 0; i < sourceA.Length; i++) a[offset * target.InFeatures + i] = factor * sourceA[i];
            var sourceB = module.BValues;
            for (int o = 0; o < target.OutFeatures; o++)
                sourceB.Slice(o * module.Rank, module.Rank).CopyTo(b.Slice(o * target.Rank + offset, module.Rank));
            offset += module.Rank;
        }
    }

    private static void Svd(string type, LoraModule target, List<(LoraModule Module, double Weight, int Index)> parts, CombinationOptions options)
    {
        double[] b, a;
        if (type == "svd")
        {
            // ΔW = Bc·Ac with Bc = [B₁ … Bₙ] and Ac = [w₁s₁A₁; …; wₙsₙAₙ], the cat combination, then truncated without forming ΔW.
            int inner = parts.Sum(p => p.Module.Rank);
            var bc = new double[(long)target.OutFeatures * inner];
            var ac = new double[(long)inner * target.InFeatures];
            int offset = 0;
            foreach (var (module, weight, _) in parts)
            {
                double factor = weight * module.Scaling;
                var sourceA = module.AValues;
                for (int i = 0; i < sourceA.Length; i++) ac[(long)offset * target.InFeatures + i] = factor * sourceA[i];
                var sourceB = module.BValues;
                for (int o = 0; o < target.OutFeatures; o++)
                    for (int k = 0; k < module.Rank; k++) bc[(long)o * inner + offset + k] = sourceB[o * module.Rank + k];
                offset += module.Rank;
            }
            (b, a) = LowRankSvd.Truncate(bc, ac, target.OutFeatures, target.InFeatures, inner, target.Rank);
        }
        else
        {
            // The pruning types act on each full ΔWᵢ = sᵢ·Bᵢ·Aᵢ, whose combination is in general of full rank.
            int length = target.OutFeatures * target.InFeatures;
            var delta = TaskArithmetic.Combine(type, parts.Select(p => p.Module.DeltaWeight()).ToList(), parts.Select(p => p.Weight).ToList(),
                options.Density, options.MajoritySignMethod, Masks(options, target, "delta", parts, length));
            (b, a) = LowRankSvd.TruncateDense(delta, target.OutFeatures, target.InFeatures, target.Rank);
        }
        LowRankSvd.NormalizeSigns(b, a, target.OutFeatures, target.InFeatures, target.Rank);
        if (options.SvdClamp is { } clamp) Clamp(b, a, clamp);
        CopyTo(target.AValues, a);
        CopyTo(target.BValues, b);
    }

    /// <summary>
    /// PEFT's svd_clamp: hi = the q-quantile (linear interpolation, torch.quantile's default) of B's and A's entries
    /// together, then both clamped to [−hi, hi] (torch.clamp: when −hi &gt; hi every entry becomes hi).
    /// </summary>
    internal static void Clamp(double[] b, double[] a, double quantile)
    {
        var all = new double[b.Length + a.Length];
        b.CopyTo(all, 0);
        a.CopyTo(all, b.Length);
        Array.Sort(all);
        double position = quantile * (all.Length - 1);
        int lower = (int)Math.Floor(position);
        int upper = Math.Min(lower + 1, all.Length - 1);
        double hi = all[lower] + (position - lower) * (all[upper] - all[lower]);
        double low = -hi;
        for (int i = 0; i < b.Length; i++) b[i] = Math.Min(Math.Max(b[i], low), hi);
        for (int i = 0; i < a.Length; i++) a[i] = Math.Min(Math.Max(a[i], low), hi);
    }

    /// <summary>
    /// The first adapter's config with r and lora_alpha = the new rank (scaling 1), the union of the target
    /// modules, and rank_pattern/alpha_pattern entries for modules whose rank differs from r. When the union
    /// written that way would not select exactly the combined modules, target_modules becomes a regex of their names.
    /// </summary>
    private static LoraConfig NewConfig(IReadOnlyList<(LoraAdapter Adapter, double Weight)> adapters, List<(int Layer, string Module)> keys,
        Dictionary<(int, string), int> ranks, int globalRank, ModelConfig baseConfig)
    {
        var first = adapters[0].Adapter.Config;
        var rankPattern = new Dictionary<string, int>(StringComparer.Ordinal);
        var alphaPattern = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            if (ranks[key] == globalRank) continue;
            string pattern = Regex.Escape(LoraConfig.ModuleKey(key.Layer, key.Module));
            rankPattern[pattern] = ranks[key];
            alphaPattern[pattern] = ranks[key];
        }
        bool lists = first.TargetModulesRegex is null;
        var config = first with
        {
            PeftType = "LORA",
            R = globalRank,
            LoraAlpha = globalRank,
            UseRslora = false,
            RankPattern = rankPattern,
            AlphaPattern = alphaPattern,
            TargetModules = lists ? adapters.SelectMany(a => a.Adapter.Config.TargetModules!).Distinct().ToList() : null,
            TargetModulesRegex = lists ? null : string.Join("|", adapters.Select(a => $"({a.Adapter.Config.TargetModulesRegex})")),
            ExcludeModules = null,
            ExcludeModulesRegex = null,
            LayersToTransform = adapters.All(a => a.Adapter.Config.LayersToTransform is not null)
                ? adapters.SelectMany(a => a.Adapter.Config.LayersToTransform!).Distinct().Order().ToList() : null,
            LayersPattern = adapters.All(a => a.Adapter.Config.LayersToTransform is not null) ? first.LayersPattern : null,
            AloraInvocationTokens = null,
            InvocationString = null,
            InitLoraWeights = "true",
        };
        config = config.SelectingExactly(keys, baseConfig);
        config.Validate("combined adapter config");
        return config;
    }
}
