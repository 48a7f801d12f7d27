using System.Text.RegularExpressions;
using Alora.Models;

namespace Alora.Adapters;

// Legend: wᵢ = the caller's weight, sᵢ = adapter i's scaling of the module, rᵢ = its rank there.

/// <summary>
/// PEFT's add_weighted_adapter for LoRA, with its "linear", "cat" and "svd" combination types:
/// <list type="bullet">
/// <item>linear: A = Σ √(wᵢsᵢ)·Aᵢ, B = Σ √(wᵢsᵢ)·Bᵢ (PEFT's definition; needs equal ranks; not the sum of the ΔWᵢ).</item>
/// <item>cat: A = [wᵢsᵢ·Aᵢ stacked by rows], B = [Bᵢ side by side], so B·A = Σ wᵢsᵢ·Bᵢ·Aᵢ exactly; rank Σ rᵢ.</item>
/// <item>svd: the truncated SVD of ΔW = Σ wᵢsᵢ·Bᵢ·Aᵢ, B = U·S, A = Vᵀ, to svdRank (default: the largest r).</item>
/// </list>
/// The new adapter has lora_alpha = r (scaling 1, no rsLoRA), as PEFT sets it; a module present in only some
/// adapters combines those. One adapter alone is always combined linearly, as in PEFT.
/// </summary>
public static class AdapterCombination
{
    public static LoraAdapter AddWeighted(IReadOnlyList<(LoraAdapter Adapter, double Weight)> adapters, string combinationType, string newName, int? svdRank = null)
    {
        ArgumentNullException.ThrowIfNull(adapters);
        ArgumentNullException.ThrowIfNull(combinationType);
        ArgumentNullException.ThrowIfNull(newName);
        if (adapters.Count == 0) throw new ArgumentException("add_weighted_adapter needs at least one adapter", nameof(adapters));
        string type = combinationType.ToLowerInvariant();
        if (type is not ("linear" or "cat" or "svd"))
            throw new ArgumentException(
                $"combination type '{combinationType}' is not supported; expected linear, cat or svd (PEFT's ties/dare/magnitude_prune variants are not implemented)", nameof(combinationType));
        if (svdRank is <= 0) throw new ArgumentOutOfRangeException(nameof(svdRank), svdRank, "svd rank must be positive");
        if (adapters.Count == 1) type = "linear";

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

        int globalRank;
        var ranks = new Dictionary<(int, string), int>();
        switch (type)
        {
            case "linear":
                var configRanks = adapters.Select(a => a.Adapter.Config.R).Distinct().ToList();
                if (configRanks.Count != 1)
                    throw new ArgumentException($"linear combination needs adapters of the same rank r; found r = {string.Join(", ", adapters.Select(a => $"{a.Adapter.Config.R} ('{a.Adapter.Name}')"))} (use cat or svd)", nameof(adapters));
                globalRank = configRanks[0];
                foreach (var key in keys)
                {
                    var moduleRanks = Present(adapters, key).Select(p => p.Module.Rank).Distinct().ToList();
                    if (moduleRanks.Count != 1)
                        throw new ArgumentException($"linear combination needs equal ranks; {LoraConfig.ModuleKey(key.Layer, key.Module)} has ranks {string.Join(", ", moduleRanks)} (use cat or svd)", nameof(adapters));
                    ranks[key] = moduleRanks[0];
                }
                break;
            case "cat":
                globalRank = adapters.Sum(a => a.Adapter.Config.R);
                foreach (var key in keys) ranks[key] = Present(adapters, key).Sum(p => p.Module.Rank);
                break;
            default:
                globalRank = svdRank ?? adapters.Max(a => a.Adapter.Config.R);
                foreach (var key in keys) ranks[key] = globalRank;
                break;
        }

        var config = NewConfig(adapters, keys, ranks, globalRank, first.BaseConfig);
        var shapes = keys.Select(k => (k.Layer, k.Module, ranks[k])).ToList();
        var result = LoraAdapter.Allocate(newName, null, config, first.BaseConfig, null, 0, shapes);
        try
        {
            foreach (var target in result.Modules)
            {
                var parts = Present(adapters, (target.Layer, target.Module)).ToList();
                switch (type)
                {
                    case "linear": Linear(target, parts); break;
                    case "cat": Concatenate(target, parts); break;
                    default: Svd(target, parts); break;
                }
            }
            return result;
        }
        catch
        {
            result.Dispose();
            throw;
        }
    }

    private static IEnumerable<(LoraModule Module, double Weight, string Name)> Present(IReadOnlyList<(LoraAdapter Adapter, double Weight)> adapters, (int Layer, string Module) key)
    {
        foreach (var (adapter, weight) in adapters)
            if (adapter.Get(key.Layer, key.Module) is { } module) yield return (module, weight, adapter.Name);
    }

    private static void Linear(LoraModule target, List<(LoraModule Module, double Weight, string Name)> parts)
    {
        var a = target.AValues;
        var b = target.BValues;
        foreach (var (module, weight, name) in parts)
        {
            double product = weight * module.Scaling;
            if (product < 0)
                throw new ArgumentException(
                    $"linear combination scales A and B by √(weight·scaling), but adapter '{name}' has weight {weight} and scaling {module.Scaling} on layer {module.Layer} {module.Module}: " +
                    "a negative product has no square root (use cat or svd for negative weights)");
            float factor = (float)Math.Sqrt(product);
            var sourceA = module.AValues;
            var sourceB = module.BValues;
            for (int i = 0; i < a.Length; i++) a[i] += factor * sourceA[i];
            for (int i = 0; i < b.Length; i++) b[i] += factor * sourceB[i];
        }
    }

    private static void Concatenate(LoraModule target, List<(LoraModule Module, double Weight, string Name)> parts)
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

    private static void Svd(LoraModule target, List<(LoraModule Module, double Weight, string Name)> parts)
    {
        // ΔW = Bc·Ac with Bc = [B₁ … Bₙ] and Ac = [w₁s₁A₁; …; wₙsₙAₙ], the cat combination, then truncated.
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
        var (b, a) = LowRankSvd.Truncate(bc, ac, target.OutFeatures, target.InFeatures, inner, target.Rank);
        var targetA = target.AValues;
        var targetB = target.BValues;
        for (int i = 0; i < targetA.Length; i++) targetA[i] = (float)a[i];
        for (int i = 0; i < targetB.Length; i++) targetB[i] = (float)b[i];
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
