using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Formats;

namespace Alora.Adapters;

public sealed partial record LoraConfig
{
    /// <summary>
    /// Fields that PEFT writes and that must keep their "off" value here, with the reason Alora refuses anything
    /// else. A null, an empty list or an empty object counts as off; so does false.
    /// </summary>
    private static readonly Dictionary<string, string> s_mustBeOff = new(StringComparer.Ordinal)
    {
        ["modules_to_save"] = "null (fully trained extra modules such as lm_head are not supported; Alora adapters hold only LoRA A/B matrices)",
        ["megatron_config"] = "null (Megatron parallel layers are not supported)",
        ["trainable_token_indices"] = "null (trainable embedding rows are not supported)",
        ["loftq_config"] = "{} (LoftQ quantized initialisation is not supported)",
        ["eva_config"] = "null (EVA initialisation is not supported)",
        ["corda_config"] = "null (CorDA initialisation is not supported)",
        ["use_qalora"] = "false (QALoRA is not supported)",
        ["layer_replication"] = "null (layer replication changes the base model's depth; not supported)",
        ["target_parameters"] = "null (LoRA on raw nn.Parameters is not supported)",
        ["arrow_config"] = "null here: an Arrow router config is loaded as an Arrow model (its folder, or the folder holding arrow_router/ and the experts; ArrowModel.Load, or LanguageModel.LoadAdapter)",
    };

    /// <summary>Parses a PEFT adapter_config.json object; <paramref name="source"/> names it in errors.</summary>
    public static LoraConfig Parse(JsonObject json, string source)
    {
        ArgumentNullException.ThrowIfNull(json);
        var known = new HashSet<string>(StringComparer.Ordinal)
        {
            "peft_type", "task_type", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping", "peft_version",
            "r", "lora_alpha", "lora_dropout", "use_rslora", "target_modules", "exclude_modules", "layers_to_transform",
            "layers_pattern", "rank_pattern", "alpha_pattern", "bias", "lora_bias", "fan_in_fan_out", "use_dora",
            "init_lora_weights", "alora_invocation_tokens", "invocation_string", "megatron_core", "qalora_group_size",
            "ensure_weight_tying", "runtime_config",
        };
        foreach (var (key, value) in json)
        {
            if (s_mustBeOff.TryGetValue(key, out var expected))
            {
                if (!IsOff(value)) throw Unsupported(source, key, Show(value), expected);
                continue;
            }
            if (!known.Contains(key))
                throw new ModelFormatException($"{source}: field '{key}' is not supported (not a field of PEFT's LoraConfig that Alora understands; value {Show(value)})");
        }

        var r = new Reader(json, source);
        var (targetList, targetRegex) = r.ListOrString("target_modules");
        var (excludeList, excludeRegex) = r.ListOrString("exclude_modules");
        var config = new LoraConfig
        {
            PeftType = r.String("peft_type") ?? throw new ModelFormatException($"{source}: field 'peft_type' is missing; expected \"LORA\""),
            TaskType = r.String("task_type"),
            BaseModelNameOrPath = r.String("base_model_name_or_path"),
            Revision = r.String("revision"),
            InferenceMode = r.Bool("inference_mode") ?? true,
            AutoMapping = json["auto_mapping"]?.DeepClone(),
            PeftVersion = r.String("peft_version"),
            R = r.Int("r") ?? 8,
            LoraAlpha = r.Double("lora_alpha") ?? 8,
            LoraDropout = r.Double("lora_dropout") ?? 0,
            UseRslora = r.Bool("use_rslora") ?? false,
            TargetModules = targetList,
            TargetModulesRegex = targetRegex,
            ExcludeModules = excludeList,
            ExcludeModulesRegex = excludeRegex,
            LayersToTransform = r.IntOrIntList("layers_to_transform"),
            LayersPattern = r.ListOrString("layers_pattern") switch { (null, null) => null, (var l, null) => l, (_, var s) => [s!] },
            RankPattern = r.IntMap("rank_pattern"),
            AlphaPattern = r.DoubleMap("alpha_pattern"),
            Bias = r.String("bias") ?? "none",
            LoraBias = r.Bool("lora_bias") ?? false,
            FanInFanOut = r.Bool("fan_in_fan_out") ?? false,
            UseDora = r.Bool("use_dora") ?? false,
            InitLoraWeights = r.BoolOrString("init_lora_weights") ?? "true",
            AloraInvocationTokens = r.IntList("alora_invocation_tokens"),
            InvocationString = r.String("invocation_string"),
            MegatronCore = r.String("megatron_core") ?? "megatron.core",
            QaloraGroupSize = r.Int("qalora_group_size") ?? 16,
            EnsureWeightTying = r.Bool("ensure_weight_tying") ?? false,
        };
        config.Validate(source);
        return config;
    }

    /// <summary>The JSON PEFT's LoraConfig.to_dict() produces, field for field.</summary>
    public JsonObject ToJson()
    {
        static JsonNode? Strings(IReadOnlyList<string>? list, string? regex)
            => list is not null ? new JsonArray(list.Select(s => (JsonNode?)JsonValue.Create(s)).ToArray()) : regex is null ? null : JsonValue.Create(regex);
        static JsonNode Number(double value)
            => value == Math.Floor(value) && Math.Abs(value) < int.MaxValue ? JsonValue.Create((int)value) : JsonValue.Create(value);

        var json = new JsonObject
        {
            ["task_type"] = TaskType,
            ["peft_type"] = PeftType,
            ["auto_mapping"] = AutoMapping?.DeepClone(),
            ["peft_version"] = PeftVersion,
            ["base_model_name_or_path"] = BaseModelNameOrPath,
            ["revision"] = Revision,
            ["inference_mode"] = InferenceMode,
            ["r"] = R,
            ["target_modules"] = Strings(TargetModules, TargetModulesRegex),
            ["exclude_modules"] = Strings(ExcludeModules, ExcludeModulesRegex),
            ["lora_alpha"] = Number(LoraAlpha),
            ["lora_dropout"] = LoraDropout,
            ["fan_in_fan_out"] = FanInFanOut,
            ["bias"] = Bias,
            ["use_rslora"] = UseRslora,
            ["modules_to_save"] = null,
            ["init_lora_weights"] = InitLoraWeights switch { "true" => JsonValue.Create(true), "false" => JsonValue.Create(false), var s => JsonValue.Create(s) },
            ["layers_to_transform"] = LayersToTransform is null ? null : new JsonArray(LayersToTransform.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()),
            ["layers_pattern"] = LayersPattern is null ? null : LayersPattern.Count == 1 ? JsonValue.Create(LayersPattern[0]) : Strings(LayersPattern, null),
            ["rank_pattern"] = new JsonObject(RankPattern.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)JsonValue.Create(kv.Value)))),
            ["alpha_pattern"] = new JsonObject(AlphaPattern.Select(kv => KeyValuePair.Create(kv.Key, (JsonNode?)Number(kv.Value)))),
            ["megatron_config"] = null,
            ["megatron_core"] = MegatronCore,
            ["trainable_token_indices"] = null,
            ["loftq_config"] = new JsonObject(),
            ["eva_config"] = null,
            ["corda_config"] = null,
            ["use_dora"] = UseDora,
            ["alora_invocation_tokens"] = AloraInvocationTokens is null ? null : new JsonArray(AloraInvocationTokens.Select(i => (JsonNode?)JsonValue.Create(i)).ToArray()),
            ["use_qalora"] = false,
            ["qalora_group_size"] = QaloraGroupSize,
            ["layer_replication"] = null,
            ["lora_bias"] = LoraBias,
            ["target_parameters"] = null,
            ["arrow_config"] = null,
            ["ensure_weight_tying"] = EnsureWeightTying,
        };
        // Legacy IBM aLoRA files carry the invocation as text; keep it so a round trip stays loadable by IBM's code.
        if (InvocationString is not null) json["invocation_string"] = InvocationString;
        return json;
    }

    private static bool IsOff(JsonNode? value) => value switch
    {
        null => true,
        JsonArray a => a.Count == 0,
        JsonObject o => o.Count == 0,
        JsonValue v when v.GetValueKind() == JsonValueKind.False => true,
        _ => false,
    };

    private static string Show(JsonNode? value)
    {
        string text = value?.ToJsonString() ?? "null";
        return text.Length <= 120 ? text : text[..117] + "...";
    }

    /// <summary>Typed field access with errors that name the file, the field, the expected and the found type.</summary>
    private readonly struct Reader(JsonObject json, string source)
    {
        private ModelFormatException Error(string key, string expected)
            => new($"{source}: field '{key}' should be {expected}, found {Show(json[key])}");

        private JsonValue? Value(string key, string expected)
        {
            var node = json[key];
            if (node is null) return null;
            return node as JsonValue ?? throw Error(key, expected);
        }

        public string? String(string key)
        {
            var v = Value(key, "a string");
            if (v is null) return null;
            return v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : throw Error(key, "a string");
        }

        public bool? Bool(string key)
        {
            var v = Value(key, "true or false");
            if (v is null) return null;
            return v.GetValueKind() switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw Error(key, "true or false") };
        }

        public int? Int(string key)
        {
            var v = Value(key, "an integer");
            if (v is null) return null;
            if (v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<double>(out double d) || d != Math.Floor(d) || Math.Abs(d) > int.MaxValue)
                throw Error(key, "an integer");
            return (int)d;
        }

        public double? Double(string key)
        {
            var v = Value(key, "a number");
            if (v is null) return null;
            return v.GetValueKind() == JsonValueKind.Number ? v.GetValue<double>() : throw Error(key, "a number");
        }

        public string? BoolOrString(string key)
        {
            var v = Value(key, "true, false or a string");
            if (v is null) return null;
            return v.GetValueKind() switch
            {
                JsonValueKind.True => "true",
                JsonValueKind.False => "false",
                JsonValueKind.String => v.GetValue<string>(),
                _ => throw Error(key, "true, false or a string"),
            };
        }

        public (IReadOnlyList<string>? List, string? Text) ListOrString(string key)
        {
            var node = json[key];
            if (node is null) return (null, null);
            if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String) return (null, v.GetValue<string>());
            if (node is not JsonArray array) throw Error(key, "a list of strings or a string");
            var list = new List<string>();
            foreach (var item in array)
            {
                if (item is not JsonValue s || s.GetValueKind() != JsonValueKind.String) throw Error(key, "a list of strings or a string");
                list.Add(s.GetValue<string>());
            }
            return (list, null);
        }

        public int[]? IntList(string key)
        {
            var node = json[key];
            if (node is null) return null;
            if (node is not JsonArray array) throw Error(key, "a list of integers or null");
            var result = new int[array.Count];
            for (int i = 0; i < result.Length; i++)
            {
                if (array[i] is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<double>(out double d) || d != Math.Floor(d) || Math.Abs(d) > int.MaxValue)
                    throw Error(key, "a list of integers or null");
                result[i] = (int)d;
            }
            return result;
        }

        public IReadOnlyList<int>? IntOrIntList(string key)
        {
            var node = json[key];
            if (node is null) return null;
            if (node is JsonValue) return [Int(key)!.Value];
            return IntList(key);
        }

        public IReadOnlyDictionary<string, int> IntMap(string key)
        {
            var node = json[key];
            var result = new Dictionary<string, int>(StringComparer.Ordinal);
            if (node is null) return result;
            if (node is not JsonObject map) throw Error(key, "an object mapping module patterns to integers");
            foreach (var (name, value) in map)
            {
                if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.Number || !v.TryGetValue<double>(out double d) || d != Math.Floor(d))
                    throw new ModelFormatException($"{source}: field '{key}[\"{name}\"]' should be an integer, found {Show(value)}");
                result[name] = (int)d;
            }
            return result;
        }

        public IReadOnlyDictionary<string, double> DoubleMap(string key)
        {
            var node = json[key];
            var result = new Dictionary<string, double>(StringComparer.Ordinal);
            if (node is null) return result;
            if (node is not JsonObject map) throw Error(key, "an object mapping module patterns to numbers");
            foreach (var (name, value) in map)
            {
                if (value is not JsonValue v || v.GetValueKind() != JsonValueKind.Number)
                    throw new ModelFormatException($"{source}: field '{key}[\"{name}\"]' should be a number, found {Show(value)}");
                result[name] = v.GetValue<double>();
            }
            return result;
        }
    }

    internal static string FormatNumber(double value) => value.ToString("R", CultureInfo.InvariantCulture);
}
