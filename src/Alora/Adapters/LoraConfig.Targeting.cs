using System.Collections.Concurrent;
using System.Text.RegularExpressions;
using Alora.Formats;
using Alora.Models;

namespace Alora.Adapters;

// Module keys are the names PEFT matches against: the base model's module names, e.g.
// "model.layers.3.self_attn.q_proj" or "model.layers.3.mlp.down_proj" (ParameterLayout.ProjectionName).
public sealed partial record LoraConfig
{
    /// <summary>The seven Linear modules of a Llama-family decoder layer (lm_head is never a LoRA target here).</summary>
    public static readonly IReadOnlyList<string> ProjectionModules = Projections.PeftNames;

    private static readonly ConcurrentDictionary<string, Regex> s_regexCache = new(StringComparer.Ordinal);

    /// <summary>PEFT's "all-linear": every Linear except the output layer.</summary>
    public const string AllLinear = "all-linear";

    /// <summary>Whether PEFT would put a LoRA on <paramref name="module"/> of decoder layer <paramref name="layer"/>.</summary>
    public bool Targets(int layer, string module)
    {
        string key = ModuleKey(layer, module);
        if (ExcludeModulesRegex is not null && FullMatch(ExcludeModulesRegex, key)) return false;
        if (ExcludeModules is not null && MatchesNameOrSuffix(ExcludeModules, key)) return false;

        if (TargetModulesRegex is not null)
            return TargetModulesRegex == AllLinear || FullMatch(TargetModulesRegex, key);
        if (TargetModules is null || !MatchesNameOrSuffix(TargetModules, key)) return false;
        return LayersToTransform is null || LayerIndexOf(key) is int index && LayersToTransform.Contains(index);
    }

    /// <summary>The rank of a targeted module: the first rank_pattern key that matches it, else r.</summary>
    public int RankOf(int layer, string module)
        => PatternKey(RankPattern.Keys, ModuleKey(layer, module)) is string key ? RankPattern[key] : R;

    /// <summary>The alpha of a targeted module: the first alpha_pattern key that matches it, else lora_alpha.</summary>
    public double AlphaOf(int layer, string module)
        => PatternKey(AlphaPattern.Keys, ModuleKey(layer, module)) is string key ? AlphaPattern[key] : LoraAlpha;

    /// <summary>alpha / r, or alpha / √r with rsLoRA (per module, after rank_pattern and alpha_pattern).</summary>
    public float ScalingOf(int layer, string module)
    {
        double rank = RankOf(layer, module);
        double alpha = AlphaOf(layer, module);
        return (float)(UseRslora ? alpha / Math.Sqrt(rank) : alpha / rank);
    }

    /// <summary>The module's position in <see cref="ProjectionModules"/> (q, k, v, o, gate, up, down), or -1.</summary>
    public static int ModuleIndex(string module) => Projections.TryParse(module, out var p) ? (int)p : -1;

    public static string ModuleKey(int layer, string module)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(layer);
        if (!ProjectionModules.Contains(module))
            throw new ArgumentException($"unknown module '{module}'; expected one of {string.Join(", ", ProjectionModules)}", nameof(module));
        return ParameterLayout.ProjectionName(layer, module);
    }

    /// <summary>A list entry matches a module whose full name equals it or ends with "." + it.</summary>
    private static bool MatchesNameOrSuffix(IReadOnlyList<string> names, string key)
    {
        foreach (string name in names)
            if (key == name || key.EndsWith("." + name, StringComparison.Ordinal)) return true;
        return false;
    }

    /// <summary>Python's re.fullmatch.</summary>
    private static bool FullMatch(string pattern, string key) => Compiled(@"^(?:" + pattern + @")\z").IsMatch(key);

    /// <summary>
    /// The layer index PEFT reads from a module name for layers_to_transform: the number after the layers_pattern
    /// component (any component when there is none), followed by a dot. Null when the name has no such number.
    /// </summary>
    private int? LayerIndexOf(string key)
    {
        var patterns = LayersPattern is { Count: > 0 } ? LayersPattern.Select(p => @"^.*\." + p + @"\.(\d+)\.") : [@"^.*\.[^.]*\.(\d+)\."];
        foreach (string pattern in patterns)
        {
            var match = Compiled(pattern).Match(key);
            if (match.Success) return int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        return null;
    }

    /// <summary>
    /// PEFT (≥ 0.14) pattern keys: a key is a regular expression that must match the whole module name or the part
    /// after one of its dots; the first matching key in the file's order wins.
    /// </summary>
    private static string? PatternKey(IEnumerable<string> keys, string moduleKey)
    {
        foreach (string key in keys)
            if (Compiled(@"^(?:.*\.)?(?:" + key + @")\z").IsMatch(moduleKey)) return key;
        return null;
    }

    /// <summary>
    /// This config, or a copy whose target_modules is a regex of exactly <paramref name="modules"/> when its own
    /// selection in <paramref name="baseConfig"/> differs (so a written config always matches its weights).
    /// </summary>
    internal LoraConfig SelectingExactly(IReadOnlyCollection<(int Layer, string Module)> modules, Models.ModelConfig baseConfig)
    {
        var wanted = modules.ToHashSet();
        for (int layer = 0; layer < baseConfig.LayerCount; layer++)
            foreach (string module in ProjectionModules)
                if (Targets(layer, module) != wanted.Contains((layer, module)))
                    return this with
                    {
                        TargetModules = null,
                        TargetModulesRegex = string.Join("|", modules.Select(k => Regex.Escape(ModuleKey(k.Layer, k.Module)))),
                        ExcludeModules = null,
                        ExcludeModulesRegex = null,
                        LayersToTransform = null,
                        LayersPattern = null,
                    };
        return this;
    }

    private static Regex Compiled(string pattern) => s_regexCache.GetOrAdd(pattern, p => new Regex(FromPythonSyntax(p), RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)));

    /// <summary>
    /// PEFT's patterns are Python regular expressions; the two spellings .NET lacks are Python's named groups
    /// (?P&lt;name&gt;…) and backreferences (?P=name). Everything else these configs use means the same in both.
    /// </summary>
    internal static string FromPythonSyntax(string pattern)
        => Regex.Replace(pattern.Replace("(?P<", "(?<", StringComparison.Ordinal), @"\(\?P=(\w+)\)", @"\k<$1>");

    private void ValidatePatterns(string source)
    {
        void Check(string field, string pattern)
        {
            try
            {
                _ = Compiled(pattern);
            }
            catch (ArgumentException e)
            {
                throw new ModelFormatException($"{source}: field '{field}' holds an invalid regular expression \"{pattern}\": {e.Message}", e);
            }
        }
        if (TargetModulesRegex is not null && TargetModulesRegex != AllLinear) Check("target_modules", TargetModulesRegex);
        if (ExcludeModulesRegex is not null) Check("exclude_modules", ExcludeModulesRegex);
        foreach (string key in RankPattern.Keys) Check("rank_pattern", key);
        foreach (string key in AlphaPattern.Keys) Check("alpha_pattern", key);
        foreach (string p in LayersPattern ?? []) Check("layers_pattern", p);
    }
}
