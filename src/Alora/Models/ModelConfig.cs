using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Formats;
using Alora.Kernels;

namespace Alora.Models;

/// <summary>The decoder families Alora runs. They share one forward pass and differ in a few switches.</summary>
public enum ModelArchitecture { Llama, Mistral, Qwen2, Granite }

/// <summary>
/// Everything the forward pass needs to know about a model's shape and numerics, from a Hugging Face
/// config.json or from GGUF metadata.
/// </summary>
public sealed record ModelConfig
{
    public required ModelArchitecture Architecture { get; init; }
    public required int HiddenSize { get; init; }
    public required int IntermediateSize { get; init; }
    public required int LayerCount { get; init; }
    public required int HeadCount { get; init; }
    public required int KeyValueHeadCount { get; init; }
    public required int HeadDim { get; init; }
    public required int VocabSize { get; init; }
    public required float RmsNormEps { get; init; }
    public double RopeTheta { get; init; } = 10000;
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>Linear rope scaling (positions divided by this factor); 1 when absent.</summary>
    public double RopeLinearFactor { get; init; } = 1;
    public int MaxPositionEmbeddings { get; init; } = 2048;
    public bool TieWordEmbeddings { get; init; }
    /// <summary>q/k/v projections carry a bias (Qwen2 always; Llama when attention_bias).</summary>
    public bool QkvBias { get; init; }
    /// <summary>o_proj carries a bias (Llama attention_bias).</summary>
    public bool OutputBias { get; init; }
    public bool MlpBias { get; init; }
    /// <summary>Attention attends to at most this many previous positions (Mistral); null = unlimited.</summary>
    public int? SlidingWindow { get; init; }
    // Granite's multipliers; 1 (and 1/√Dh for attention) elsewhere.
    public float EmbeddingMultiplier { get; init; } = 1;
    public float? AttentionMultiplier { get; init; }
    public float ResidualMultiplier { get; init; } = 1;
    public float LogitsScaling { get; init; } = 1;
    public int? BosTokenId { get; init; }
    public IReadOnlyList<int> EosTokenIds { get; init; } = [];
    public string TorchDType { get; init; } = "float32";

    /// <summary>1/√Dh unless the model says otherwise (Granite's attention_multiplier).</summary>
    public float AttentionScale => AttentionMultiplier ?? 1f / MathF.Sqrt(HeadDim);
    public int QueryDim => HeadCount * HeadDim;
    public int KeyValueDim => KeyValueHeadCount * HeadDim;

    public RopeTable CreateRopeTable()
    {
        var table = RopeTable.Create(HeadDim, RopeTheta, RopeScaling);
        if (RopeLinearFactor != 1)
            for (int i = 0; i < table.InverseFrequencies.Length; i++) table.InverseFrequencies[i] /= RopeLinearFactor;
        return table;
    }

    private static readonly Dictionary<string, ModelArchitecture> s_architectures = new(StringComparer.Ordinal)
    {
        ["LlamaForCausalLM"] = ModelArchitecture.Llama,
        ["MistralForCausalLM"] = ModelArchitecture.Mistral,
        ["Qwen2ForCausalLM"] = ModelArchitecture.Qwen2,
        ["GraniteForCausalLM"] = ModelArchitecture.Granite,
    };

    public static ModelConfig FromFile(string configPath)
    {
        if (!File.Exists(configPath)) throw new FileNotFoundException($"config.json not found: {configPath}", configPath);
        JsonNode? root;
        string text = File.ReadAllText(configPath);
        if (Utf8Text.DescribeInvalid(text) is { } bad) throw new ModelFormatException($"{configPath}: {bad}");
        try { root = JsonNode.Parse(text, documentOptions: Utf8Text.StrictJson); }
        catch (JsonException e) { throw new ModelFormatException($"{configPath}: not valid JSON: {e.Message}", e); }
        if (root is not JsonObject obj) throw new ModelFormatException($"{configPath}: expected a JSON object");
        return FromJson(obj, configPath);
    }

    public static ModelConfig FromJson(JsonObject json, string source)
    {
        var reader = new ConfigReader(json, source);
        string[] architectures = reader.StringArray("architectures");
        var known = architectures.Where(s_architectures.ContainsKey).ToArray();
        if (known.Length == 0)
        {
            string found = architectures.Length == 0 ? "none" : string.Join(", ", architectures);
            throw new ModelFormatException(
                $"{source}: field 'architectures' is [{found}]; Alora supports {string.Join(", ", s_architectures.Keys)}");
        }
        var architecture = s_architectures[known[0]];
        string activation = reader.String("hidden_act") ?? "silu";
        if (activation != "silu")
            throw new ModelFormatException($"{source}: field 'hidden_act' is '{activation}'; Alora supports 'silu'");

        int hidden = reader.RequiredInt("hidden_size");
        int heads = reader.RequiredInt("num_attention_heads");
        int kvHeads = reader.Int("num_key_value_heads") ?? heads;
        int headDim = reader.Int("head_dim") ?? hidden / heads;
        if (heads % kvHeads != 0)
            throw new ModelFormatException($"{source}: num_attention_heads ({heads}) must be a multiple of num_key_value_heads ({kvHeads})");

        RopeScaling? llama3 = null;
        double linear = 1;
        if (json["rope_scaling"] is JsonObject scaling)
        {
            string type = scaling["rope_type"]?.GetValue<string>() ?? scaling["type"]?.GetValue<string>() ?? "default";
            var s = new ConfigReader(scaling, source + " rope_scaling");
            switch (type)
            {
                case "default": break;
                case "llama3":
                    llama3 = new RopeScaling(s.RequiredDouble("factor"), s.RequiredDouble("low_freq_factor"),
                        s.RequiredDouble("high_freq_factor"), s.RequiredInt("original_max_position_embeddings"));
                    break;
                case "linear":
                    linear = s.RequiredDouble("factor");
                    break;
                default:
                    throw new ModelFormatException($"{source}: rope_scaling type '{type}' is not supported (expected llama3, linear or none)");
            }
        }

        bool attentionBias = reader.Bool("attention_bias") ?? false;
        int? slidingWindow = architecture switch
        {
            ModelArchitecture.Mistral => reader.Int("sliding_window"),
            ModelArchitecture.Qwen2 when reader.Bool("use_sliding_window") == true =>
                throw new ModelFormatException($"{source}: use_sliding_window = true (per-layer sliding windows) is not supported"),
            _ => null,
        };

        return new ModelConfig
        {
            Architecture = architecture,
            HiddenSize = hidden,
            IntermediateSize = reader.RequiredInt("intermediate_size"),
            LayerCount = reader.RequiredInt("num_hidden_layers"),
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            VocabSize = reader.RequiredInt("vocab_size"),
            RmsNormEps = (float)(reader.Double("rms_norm_eps") ?? 1e-6),
            RopeTheta = reader.Double("rope_theta") ?? 10000,
            RopeScaling = llama3,
            RopeLinearFactor = linear,
            MaxPositionEmbeddings = reader.Int("max_position_embeddings") ?? 2048,
            TieWordEmbeddings = reader.Bool("tie_word_embeddings") ?? architecture == ModelArchitecture.Granite,
            QkvBias = architecture == ModelArchitecture.Qwen2 || attentionBias,
            OutputBias = architecture != ModelArchitecture.Qwen2 && attentionBias,
            MlpBias = reader.Bool("mlp_bias") ?? false,
            SlidingWindow = slidingWindow,
            EmbeddingMultiplier = architecture == ModelArchitecture.Granite ? (float)(reader.Double("embedding_multiplier") ?? 1) : 1,
            AttentionMultiplier = architecture == ModelArchitecture.Granite ? (float?)reader.Double("attention_multiplier") : null,
            ResidualMultiplier = architecture == ModelArchitecture.Granite ? (float)(reader.Double("residual_multiplier") ?? 1) : 1,
            LogitsScaling = architecture == ModelArchitecture.Granite ? (float)(reader.Double("logits_scaling") ?? 1) : 1,
            BosTokenId = reader.Int("bos_token_id"),
            EosTokenIds = reader.IntOrIntArray("eos_token_id"),
            TorchDType = reader.String("torch_dtype") ?? reader.String("dtype") ?? "float32",
        };
    }

    /// <summary>
    /// The GGUF architectures Alora reads, as llama.cpp's convert_hf_to_gguf.py names them: "llama" (Llama, and
    /// Mistral, which llama.cpp converts as llama), "qwen2" and "granite".
    /// </summary>
    public static IReadOnlyList<string> GgufArchitectures { get; } = ["llama", "qwen2", "granite"];

    /// <summary>
    /// Reads a GGUF file's model metadata ({arch}.* keys as llama.cpp writes them). "llama" with
    /// {arch}.attention.sliding_window is a Mistral-style model; "granite" adds {arch}.embedding_scale,
    /// {arch}.residual_scale, {arch}.attention.scale and {arch}.logit_scale (Hugging Face's embedding_multiplier,
    /// residual_multiplier, attention_multiplier and logits_scaling). Biases are read where the tensors exist
    /// (qwen2's blk.N.attn_q/k/v.bias).
    /// </summary>
    public static ModelConfig FromGguf(GgufFile gguf)
    {
        string arch = gguf.GetString("general.architecture")
            ?? throw new ModelFormatException($"{gguf.Path}: metadata 'general.architecture' is missing");
        if (!GgufArchitectures.Contains(arch))
            throw new ModelFormatException($"{gguf.Path}: general.architecture is '{arch}'; Alora reads GGUF files of the architectures {string.Join(", ", GgufArchitectures.Select(a => $"'{a}'"))}");
        long Required(string key) => gguf.GetInteger($"{arch}.{key}")
            ?? throw new ModelFormatException($"{gguf.Path}: metadata '{arch}.{key}' is missing");

        int hidden = (int)Required("embedding_length");
        int heads = (int)Required("attention.head_count");
        int kvHeads = (int?)gguf.GetInteger($"{arch}.attention.head_count_kv") ?? heads;
        int headDim = (int?)gguf.GetInteger($"{arch}.attention.key_length") ?? hidden / heads;
        if (heads <= 0 || kvHeads <= 0 || heads % kvHeads != 0)
            throw new ModelFormatException($"{gguf.Path}: {arch}.attention.head_count ({heads}) must be a positive multiple of {arch}.attention.head_count_kv ({kvHeads})");
        int vocab = (int?)gguf.GetInteger($"{arch}.vocab_size")
            ?? gguf.GetStringArray("tokenizer.ggml.tokens")?.Length
            ?? (int)gguf.GetInfo("token_embd.weight").Dimensions[1];
        double linear = 1;
        if (gguf.GetString($"{arch}.rope.scaling.type") is "linear")
            linear = gguf.GetFloat($"{arch}.rope.scaling.factor") ?? 1;
        int? slidingWindow = (int?)gguf.GetInteger($"{arch}.attention.sliding_window");
        if (slidingWindow is not null && arch != "llama")
            throw new ModelFormatException($"{gguf.Path}: {arch}.attention.sliding_window is set; Alora applies a sliding window to 'llama' (Mistral-style) files only");
        var architecture = arch switch
        {
            "qwen2" => ModelArchitecture.Qwen2,
            "granite" => ModelArchitecture.Granite,
            _ => slidingWindow is null ? ModelArchitecture.Llama : ModelArchitecture.Mistral,
        };
        bool granite = architecture == ModelArchitecture.Granite;
        float Scale(string key) => (float)(gguf.GetFloat($"{arch}.{key}") ?? 1);
        int? eos = (int?)gguf.GetInteger("tokenizer.ggml.eos_token_id");
        int? eot = (int?)gguf.GetInteger("tokenizer.ggml.eot_token_id");
        return new ModelConfig
        {
            Architecture = architecture,
            HiddenSize = hidden,
            IntermediateSize = (int)Required("feed_forward_length"),
            LayerCount = (int)Required("block_count"),
            HeadCount = heads,
            KeyValueHeadCount = kvHeads,
            HeadDim = headDim,
            VocabSize = vocab,
            RmsNormEps = (float)(gguf.GetFloat($"{arch}.attention.layer_norm_rms_epsilon") ?? 1e-5),
            RopeTheta = gguf.GetFloat($"{arch}.rope.freq_base") ?? 10000,
            RopeLinearFactor = linear,
            MaxPositionEmbeddings = (int?)gguf.GetInteger($"{arch}.context_length") ?? 2048,
            TieWordEmbeddings = !gguf.Tensors.ContainsKey("output.weight"),
            QkvBias = gguf.Tensors.ContainsKey("blk.0.attn_q.bias"),
            OutputBias = gguf.Tensors.ContainsKey("blk.0.attn_output.bias"),
            MlpBias = gguf.Tensors.ContainsKey("blk.0.ffn_up.bias"),
            SlidingWindow = slidingWindow,
            EmbeddingMultiplier = granite ? Scale("embedding_scale") : 1,
            ResidualMultiplier = granite ? Scale("residual_scale") : 1,
            AttentionMultiplier = granite && gguf.GetFloat($"{arch}.attention.scale") is double attention ? (float)attention : null,
            LogitsScaling = granite ? Scale("logit_scale") : 1,
            BosTokenId = (int?)gguf.GetInteger("tokenizer.ggml.bos_token_id"),
            EosTokenIds = new[] { eos, eot }.Where(x => x.HasValue).Select(x => x!.Value).Distinct().ToArray(),
        };
    }

    /// <summary>Typed, error-reporting access to a config object's fields.</summary>
    private readonly struct ConfigReader(JsonObject json, string source)
    {
        private JsonNode? Node(string key) => json.TryGetPropertyValue(key, out var node) ? node : null;

        private ModelFormatException Error(string key, string expected, JsonNode? found)
            => new($"{source}: field '{key}' should be {expected}, found {found?.ToJsonString() ?? "null"}");

        public int? Int(string key)
        {
            var node = Node(key);
            if (node is null) return null;
            if (node is JsonValue v && v.TryGetValue<long>(out var l) && l is >= int.MinValue and <= int.MaxValue) return (int)l;
            if (node is JsonValue d && d.TryGetValue<double>(out var x) && x == Math.Floor(x)) return (int)x;
            throw Error(key, "an integer", node);
        }

        public int RequiredInt(string key) => Int(key) ?? throw new ModelFormatException($"{source}: required field '{key}' is missing");

        public double? Double(string key)
        {
            var node = Node(key);
            if (node is null) return null;
            if (node is JsonValue v && v.TryGetValue<double>(out var d)) return d;
            throw Error(key, "a number", node);
        }

        public double RequiredDouble(string key) => Double(key) ?? throw new ModelFormatException($"{source}: required field '{key}' is missing");

        public bool? Bool(string key)
        {
            var node = Node(key);
            if (node is null) return null;
            if (node is JsonValue v && v.TryGetValue<bool>(out var b)) return b;
            throw Error(key, "true or false", node);
        }

        public string? String(string key)
        {
            var node = Node(key);
            if (node is null) return null;
            if (node is JsonValue v && v.TryGetValue<string>(out var s)) return s;
            throw Error(key, "a string", node);
        }

        public string[] StringArray(string key)
        {
            var node = Node(key);
            if (node is null) return [];
            if (node is JsonArray a && a.All(x => x is JsonValue v && v.TryGetValue<string>(out _)))
                return a.Select(x => x!.GetValue<string>()).ToArray();
            throw Error(key, "an array of strings", node);
        }

        public int[] IntOrIntArray(string key)
        {
            var node = Node(key);
            if (node is null) return [];
            if (node is JsonArray a)
            {
                var ids = new int[a.Count];
                for (int i = 0; i < ids.Length; i++)
                    ids[i] = a[i] is JsonValue v && v.TryGetValue<int>(out var id) ? id : throw Error(key, "an integer or a list of integers", node);
                return ids;
            }
            return [Int(key)!.Value];
        }
    }
}
