using System.Text.Json.Nodes;
using Alora.Formats;

namespace Alora.Adapters;

/// <summary>
/// PEFT's <c>adapter_config.json</c> for a LoRA or aLoRA adapter, typed. Field names, meanings and defaults follow
/// PEFT's LoraConfig (≥ 0.18); what Alora cannot honour (DoRA on an aLoRA, as PEFT; biases, modules_to_save, layer
/// replication, initialisations that rewrite the base weights…) is refused with an error naming the field.
/// Parsing lives in LoraConfig.Json.cs, module selection in LoraConfig.Targeting.cs.
/// </summary>
public sealed partial record LoraConfig
{
    /// <summary>"LORA"; legacy IBM aLoRA adapters say "ALORA".</summary>
    public string PeftType { get; init; } = "LORA";
    public string? TaskType { get; init; } = "CAUSAL_LM";
    public string? BaseModelNameOrPath { get; init; }
    public string? Revision { get; init; }
    public bool InferenceMode { get; init; } = true;
    /// <summary>The PEFT version that wrote the file (informational; PEFT ≥ 0.18 writes it).</summary>
    public string? PeftVersion { get; init; }

    /// <summary>Default rank of every targeted module (rank_pattern overrides it per module).</summary>
    public int R { get; init; } = 8;
    /// <summary>Default alpha (alpha_pattern overrides it per module).</summary>
    public double LoraAlpha { get; init; } = 8;
    /// <summary>Scaling alpha/√r instead of alpha/r.</summary>
    public bool UseRslora { get; init; }
    public double LoraDropout { get; init; }

    /// <summary>target_modules as a list: a module matches when its full name equals an entry or ends with "." + entry.</summary>
    public IReadOnlyList<string>? TargetModules { get; init; }
    /// <summary>target_modules as a string: a regular expression that must match the full module name, or "all-linear".</summary>
    public string? TargetModulesRegex { get; init; }
    /// <summary>exclude_modules as a list (same matching as <see cref="TargetModules"/>).</summary>
    public IReadOnlyList<string>? ExcludeModules { get; init; }
    /// <summary>exclude_modules as a regular expression on the full module name.</summary>
    public string? ExcludeModulesRegex { get; init; }
    public IReadOnlyList<int>? LayersToTransform { get; init; }
    public IReadOnlyList<string>? LayersPattern { get; init; }
    /// <summary>Per-module rank: key is a regex matched against the full module name or a suffix after ".".</summary>
    public IReadOnlyDictionary<string, int> RankPattern { get; init; } = new Dictionary<string, int>();
    public IReadOnlyDictionary<string, double> AlphaPattern { get; init; } = new Dictionary<string, double>();

    /// <summary>"none" is the only value Alora supports ("all" and "lora_only" train the base biases).</summary>
    public string Bias { get; init; } = "none";
    public bool LoraBias { get; init; }
    public bool FanInFanOut { get; init; }
    /// <summary>DoRA (plain LoRA only): each targeted projection also has a magnitude vector (lora_magnitude_vector).</summary>
    public bool UseDora { get; init; }
    /// <summary>"true", "false" or "gaussian" (how Create initialises A and B).</summary>
    public string InitLoraWeights { get; init; } = "true";

    /// <summary>aLoRA: the token ids whose last occurrence switches the adapter on (PEFT ≥ 0.18).</summary>
    public int[]? AloraInvocationTokens { get; init; }
    /// <summary>Legacy IBM aLoRA: the invocation as text, tokenized with the base model's tokenizer at load.</summary>
    public string? InvocationString { get; init; }

    /// <summary>Fields PEFT writes that Alora keeps for a faithful round trip but does not interpret.</summary>
    public int QaloraGroupSize { get; init; } = 16;
    public string MegatronCore { get; init; } = "megatron.core";
    public bool EnsureWeightTying { get; init; }
    public JsonNode? AutoMapping { get; init; }

    public bool IsActivated => AloraInvocationTokens is not null || InvocationString is not null;
    public bool IsLegacyAlora => InvocationString is not null && AloraInvocationTokens is null;

    public static LoraConfig Load(string adapterConfigPath)
    {
        if (!File.Exists(adapterConfigPath))
            throw new FileNotFoundException($"adapter config not found: {adapterConfigPath} (an adapter folder holds adapter_config.json and adapter_model.safetensors)", adapterConfigPath);
        JsonNode? node;
        string text = File.ReadAllText(adapterConfigPath);
        if (Formats.Utf8Text.DescribeInvalid(text) is { } bad) throw new Formats.ModelFormatException($"{adapterConfigPath}: {bad}");
        try
        {
            node = JsonNode.Parse(text, documentOptions: Formats.Utf8Text.StrictJson);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ModelFormatException($"{adapterConfigPath}: not valid JSON: {e.Message}", e);
        }
        if (node is not JsonObject json)
            throw new ModelFormatException($"{adapterConfigPath}: expected a JSON object, found {node?.GetValueKind().ToString() ?? "null"}");
        return Parse(json, adapterConfigPath);
    }

    /// <summary>Writes the config atomically with every field PEFT's LoraConfig has, so PEFT loads it.</summary>
    public void Save(string adapterConfigPath)
    {
        Validate(adapterConfigPath);
        AtomicFile.WriteAllText(adapterConfigPath, ToJson().ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>
    /// Checks the combinations PEFT rejects and the features Alora does not implement. Every message names the
    /// source, the field, what was expected and what was found.
    /// </summary>
    public void Validate(string source)
    {
        if (PeftType is not ("LORA" or "ALORA"))
            throw Unsupported(source, "peft_type", Quote(PeftType), "\"LORA\" (or \"ALORA\" for legacy IBM aLoRA adapters)");
        if (R <= 0) throw Unsupported(source, "r", R.ToString(), "a positive rank");
        if (TargetModules is null && TargetModulesRegex is null)
            throw Unsupported(source, "target_modules", "null", "a list of module names, a regular expression or \"all-linear\"");
        if (TargetModulesRegex is not null && LayersToTransform is not null)
            throw Unsupported(source, "layers_to_transform", "a list", "null when target_modules is a string (PEFT: the regex selects layers itself)");
        if (TargetModulesRegex is not null && LayersPattern is not null)
            throw Unsupported(source, "layers_pattern", "a value", "null when target_modules is a string");
        if (LayersPattern is { Count: > 0 } && LayersToTransform is null)
            throw Unsupported(source, "layers_pattern", "a value", "null unless layers_to_transform is set (PEFT requires both)");
        foreach (var (key, rank) in RankPattern)
            if (rank <= 0) throw Unsupported(source, $"rank_pattern[\"{key}\"]", rank.ToString(), "a positive rank");
        if (Bias != "none")
            throw Unsupported(source, "bias", Quote(Bias), "\"none\" (training or merging base biases is not supported)");
        if (LoraBias) throw Unsupported(source, "lora_bias", "true", "false (a bias on lora_B is not supported)");
        if (FanInFanOut) throw Unsupported(source, "fan_in_fan_out", "true", "false (Llama-family Linear weights are stored [out, in])");
        if (UseDora && IsActivated)
            throw Unsupported(source, "use_dora", "true", "false for an aLoRA (PEFT refuses the variant combination (alora_invocation_tokens, use_dora): DoRA rescales W itself, so the tokens before the invocation could not keep the base model's KV cache)");
        if (InitLoraWeights is not ("true" or "false" or "gaussian"))
            throw Unsupported(source, "init_lora_weights", Quote(InitLoraWeights),
                "true, false or \"gaussian\" (initialisations such as pissa, olora, loftq, eva and corda rewrite the base weights)");
        if (AloraInvocationTokens is { Length: 0 })
            throw Unsupported(source, "alora_invocation_tokens", "[]", "a non-empty list of token ids, or null for a plain LoRA (an empty list never activates)");
        if (AloraInvocationTokens is not null && AloraInvocationTokens.Any(id => id < 0))
            throw Unsupported(source, "alora_invocation_tokens", "[" + string.Join(", ", AloraInvocationTokens) + "]", "non-negative token ids");
        if (InvocationString is { Length: 0 })
            throw Unsupported(source, "invocation_string", "\"\"", "a non-empty invocation text");
        if (LoraDropout is < 0 or >= 1) throw Unsupported(source, "lora_dropout", LoraDropout.ToString(System.Globalization.CultureInfo.InvariantCulture), "a probability in [0, 1)");
        ValidatePatterns(source);
    }

    internal static ModelFormatException Unsupported(string source, string field, string found, string expected)
        => new($"{source}: field '{field}' is {found}; expected {expected}");

    private static string Quote(string? s) => s is null ? "null" : System.Text.Json.JsonSerializer.Serialize(s);
}
