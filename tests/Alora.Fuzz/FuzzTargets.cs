using System.Text;
using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Alora.Structured;
using Alora.Tokenization;
using Alora.Tokenization.Templates;
using Alora.Training.Data;

namespace Alora.Fuzz;

/// <summary>
/// One parser under fuzzing: the seeds its mutations start from (real files from ../shared), where in a seed the
/// interesting bytes are (the header; mutations aim there most of the time), tokens worth splicing in for text
/// formats, the call that parses one input, and the exceptions that count as a clean refusal.
/// </summary>
public sealed class FuzzTarget
{
    public required string Name { get; init; }
    public required Func<IReadOnlyList<byte[]>> Seeds { get; init; }
    /// <summary>Runs the parser on one input; <paramref name="work"/> is a folder of this thread's own.</summary>
    public required Action<byte[], string> Run { get; init; }
    /// <summary>The project's format exceptions for this parser: anything else escaping <see cref="Run"/> is a crash.</summary>
    public required Type[] Allowed { get; init; }
    /// <summary>Bytes at the start of a seed that hold its structure (a binary header); 0 means all of it.</summary>
    public int HotBytes { get; init; }
    /// <summary>Text tokens a text-format mutation splices in.</summary>
    public IReadOnlyList<string> Dictionary { get; init; } = [];
    /// <summary>Whether a refusal must name the file it read (every target but those fed text directly).</summary>
    public bool NamesFile { get; init; } = true;
    /// <summary>The most managed bytes one input may make the parser allocate: a multiple of the input's size plus a
    /// constant for what the parser builds regardless (a compiled regex, the fixed base model it checks against).</summary>
    public long AllocationBound(long inputBytes) => AllocationPerInputByte * inputBytes + AllocationConstant;
    public long AllocationPerInputByte { get; init; } = 32;
    public long AllocationConstant { get; init; } = 16L << 20;

    public bool IsAllowed(Exception e) => Allowed.Any(t => t.IsInstanceOfType(e));
}

/// <summary>Every fuzz target, by name. The same table drives SharpFuzz (Program) and the CI harnesses.</summary>
public static class FuzzTargets
{
    private static string SharedRoot => s_sharedRoot.Value;
    private static readonly Lazy<string> s_sharedRoot = new(FindShared);

    public static string Shared(params string[] parts) => Path.Combine([SharedRoot, .. parts]);

    private static string FindShared()
    {
        if (Environment.GetEnvironmentVariable("ALORA_SHARED") is { Length: > 0 } fromEnvironment) return fromEnvironment;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Alora.slnx"))) return Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared"));
        throw new DirectoryNotFoundException($"no Alora.slnx above {AppContext.BaseDirectory} (set ALORA_SHARED to the shared/ folder)");
    }

    /// <summary>What one render may allocate, garbage included: up to TemplateLimits.MaxSteps steps of a few hundred
    /// bytes each, and strings of up to TemplateLimits.MaxLength characters.</summary>
    private const long TemplateAllocation = 768L << 20;

    private static string Stories(string file) => Shared("models", "stories260K", file);

    private static readonly Lazy<ModelConfig> s_storiesConfig = new(() => ModelConfig.FromFile(Stories("config.json")));
    private static readonly Lazy<Tokenizer> s_storiesTokenizer = new(() => Tokenizer.Load(Shared("models", "stories260K")));

    private static readonly Lazy<ChatTemplateConfig> s_trainingChat = new(() =>
    {
        string folder = Path.Combine(Path.GetTempPath(), "alora-fuzz-chat-" + Environment.ProcessId);
        Directory.CreateDirectory(folder);
        File.WriteAllText(Path.Combine(folder, "chat_template.jinja"),
            "{% for m in messages %}{{ '\\n' + m['role'] + ': ' + m['content'] }}{% endfor %}{% if add_generation_prompt %}{{ '\\nassistant:' }}{% endif %}");
        return ChatTemplateConfig.Load(folder);
    });

    /// <summary>The fixture LoRA (every projection) exported to GGUF: the seed of the GGUF LoRA reader.</summary>
    public static readonly Lazy<byte[]> GgufLoraSeed = new(() =>
    {
        string path = Path.Combine(Path.GetTempPath(), $"alora-fuzz-lora-{Environment.ProcessId}-{Environment.CurrentManagedThreadId}.gguf");
        using (var adapter = LoraAdapter.Load(Shared("fixtures", "stories260K", "alora-q-k-v"), s_storiesConfig.Value))
            GgufLoraExport.Export(adapter, path);
        try { return File.ReadAllBytes(path); }
        finally { File.Delete(path); }
    });

    private static readonly Lazy<ChatTemplateConfig> s_graniteTemplates = new(() => ChatTemplateConfig.Load(Shared("tokenizers", "granite3")));

    private static readonly string[] s_jsonTokens =
    [
        "\"", "{", "}", "[", "]", ",", ":", "null", "true", "false", "0", "-1", "1e400", "-0", "1.5",
        "2147483648", "4294967296", "9223372036854775807", "18446744073709551616", "-9223372036854775809",
        "\"\\u0000\"", "\"\\ud800\"", "\\", "\xFF", "\xC3", "\xED\xA0\x80", "[[[[[[[[[[", "]]]]]]]]]]", "{\"a\":{\"a\":{\"a\":",
    ];

    private static readonly string[] s_templateTokens =
    [
        "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", "(", ")", "[", "]", "|", ".", ",", "'", "\"", "~", "*", "**", "//", "%",
        " if ", " else ", " for x in ", " endfor ", " endif ", " macro m(x) ", " endmacro ", " set x = ", " call ", " endcall ",
        "range(100000000)", "range(1000000)", "'x' * 100000000", "[1] * 100000000", "m(m(m(x)))", "loop(", " recursive",
        " is defined", "|tojson", "|join", "|map(", "|length", "|string", "|indent(1000000)", "|center(1000000)",
        "messages", "message['content']", "raise_exception('x')", "namespace(", "(((((((((((((((((((((((((((((((", "\xFF", "\0",
        "9223372036854775807", "1e308", "-1", "**1000000", "10**10**10",
    ];

    public static IReadOnlyList<FuzzTarget> All { get; } =
    [
        new()
        {
            Name = "safetensors",
            Seeds = () => [File.ReadAllBytes(Stories("model.safetensors")), File.ReadAllBytes(Shared("fixtures", "stories260K", "lora-all", "adapter_model.safetensors"))],
            HotBytes = 8 + 4096,
            Allowed = [typeof(ModelFormatException)],
            Run = (input, work) =>
            {
                string path = Write(work, "model.safetensors", input);
                using var file = SafeTensorsFile.Open(path);
                foreach (var info in file.Tensors.Values) Touch(file.Bytes(info));
            },
        },
        new()
        {
            Name = "gguf",
            // The model (1.2 MB: afl-fuzz skips seeds over 1 MiB) and a GGUF LoRA (55 kB).
            Seeds = () => [File.ReadAllBytes(Stories("stories260K.gguf")), GgufLoraSeed.Value],
            HotBytes = 16384,
            Allowed = [typeof(ModelFormatException), typeof(InvalidDataException), typeof(NotSupportedException)],
            Run = (input, work) =>
            {
                string path = Write(work, "model.gguf", input);
                using var gguf = GgufFile.Open(path);
                foreach (var key in gguf.Metadata.Keys)
                {
                    Probe(() => gguf.GetInteger(key)); Probe(() => gguf.GetFloat(key)); Probe(() => gguf.GetString(key));
                    Probe(() => gguf.GetInt32Array(key)); Probe(() => gguf.GetFloatArray(key)); Probe(() => gguf.GetStringArray(key));
                }
                foreach (var info in gguf.TensorOrder)
                {
                    if (GgufFile.TensorByteCount(info) < 0) continue;
                    Probe(() => gguf.ReadFloats(info.Name));
                }
                Tokenizer.FromGguf(gguf).Encode("Once upon a time, Lily");
                static void Probe(Action read)
                {
                    try { read(); } catch (ModelFormatException) { }
                }
            },
        },
        new()
        {
            Name = "model-safetensors",
            Seeds = () => [File.ReadAllBytes(Stories("model.safetensors"))],
            HotBytes = 8 + 4096,
            Allowed = [typeof(ModelFormatException), typeof(InvalidDataException), typeof(NotSupportedException)],
            Run = (input, work) =>
            {
                string folder = Folder(work, "model");
                Write(folder, "model.safetensors", input);
                foreach (var f in new[] { "config.json", "tokenizer.json", "tokenizer_config.json" }) CopyOnce(Stories(f), Path.Combine(folder, f));
                using var model = LanguageModel.Load(folder);
            },
        },
        new()
        {
            Name = "model-gguf",
            Seeds = () => [File.ReadAllBytes(Stories("stories260K.gguf"))],
            HotBytes = 16384,
            Allowed = [typeof(ModelFormatException), typeof(InvalidDataException), typeof(NotSupportedException)],
            Run = (input, work) =>
            {
                string path = Write(work, "model.gguf", input);
                using var model = LanguageModel.Load(path);
            },
        },
        new()
        {
            Name = "model-config",
            Seeds = () => [File.ReadAllBytes(Stories("config.json")), File.ReadAllBytes(Shared("configs", "llama-3.2-1b", "config.json"))],
            Dictionary = s_jsonTokens,
            Allowed = [typeof(ModelFormatException)],
            Run = (input, work) => ModelConfig.FromFile(Write(work, "config.json", input)),
        },
        new()
        {
            Name = "generation-config",
            Seeds = () => [File.ReadAllBytes(Stories("generation_config.json")), Encoding.UTF8.GetBytes("{\"eos_token_id\": [2, 32000], \"bos_token_id\": 1}")],
            Dictionary = s_jsonTokens,
            Allowed = [typeof(ModelFormatException)],
            Run = (input, work) =>
            {
                string folder = Folder(work, "generation-config");
                Write(folder, "generation_config.json", input);
                GenerationConfig.ReadEosTokenIds(folder);
            },
        },
        new()
        {
            Name = "tokenizer-json",
            Seeds = () => [File.ReadAllBytes(Stories("tokenizer.json"))],
            Dictionary = s_jsonTokens,
            Allowed = [typeof(InvalidDataException), typeof(NotSupportedException)],
            Run = (input, work) =>
            {
                var tokenizer = Tokenizer.FromTokenizerJson(Write(work, "tokenizer.json", input));
                var ids = tokenizer.Encode("Once upon a time, Lily <s> saw 12 \u00e9\u2581 cats.\n");
                tokenizer.Decode(ids);
            },
        },
        new()
        {
            Name = "tokenizer-config",
            Seeds = () =>
            [
                File.ReadAllBytes(Stories("tokenizer_config.json")),
                File.ReadAllBytes(Shared("tokenizers", "tinyllama-special-tokens", "tokenizer_config.json")),
                File.ReadAllBytes(Shared("tokenizers", "granite3", "tokenizer_config.json")),
            ],
            Dictionary = s_jsonTokens,
            Allowed = [typeof(InvalidDataException), typeof(NotSupportedException)],
            Run = (input, work) =>
            {
                string folder = Folder(work, "tokenizer");
                CopyOnce(Stories("tokenizer.json"), Path.Combine(folder, "tokenizer.json"));
                Write(folder, "tokenizer_config.json", input);
                var tokenizer = Tokenizer.FromModelFolder(folder);
                tokenizer.Decode(tokenizer.Encode("Once upon a time <s></s><unk>"), skipSpecialTokens: true);
            },
        },
        new()
        {
            Name = "chat-template",
            Seeds = TemplateSeeds,
            NamesFile = false,
            Dictionary = s_templateTokens,
            Allowed = [typeof(TemplateException)],
            AllocationPerInputByte = 256,
            AllocationConstant = TemplateAllocation,
            Run = (input, work) =>
            {
                string source = Encoding.UTF8.GetString(input);
                var template = ChatTemplate.Parse(source, "fuzz.jinja");
                template.Render(TemplateVariables(), new DateTimeOffset(2025, 4, 9, 12, 0, 0, TimeSpan.Zero));
            },
        },
        new()
        {
            // One request line of `alora template` (messages, tools, documents, add_generation_prompt, now): the
            // template interpreter fed hostile variables rather than a hostile template.
            Name = "template-request",
            NamesFile = false,
            Seeds = () => [.. File.ReadLines(Shared("fixtures", "templates", "granite3.jsonl")).Take(12)
                .Select(line => Encoding.UTF8.GetBytes(JsonNode.Parse(line)!["input"]!.ToJsonString()))],
            Dictionary = [.. s_jsonTokens, "\"role\"", "\"content\"", "\"tools\"", "\"documents\"", "{\"role\": \"user\", \"content\": ", "\"add_generation_prompt\""],
            Allowed = [typeof(TemplateException), typeof(InvalidDataException)],
            AllocationPerInputByte = 256,
            AllocationConstant = TemplateAllocation,
            Run = (input, work) => ChatTemplateJsonLines.RenderLine(s_graniteTemplates.Value, Encoding.UTF8.GetString(input)),
        },
        new()
        {
            Name = "template-config",
            Seeds = () => [File.ReadAllBytes(Shared("tokenizers", "granite3", "chat_template.json")), File.ReadAllBytes(Shared("tokenizers", "qwen3", "tokenizer_config.json"))],
            Dictionary = s_jsonTokens,
            Allowed = [typeof(TemplateException), typeof(InvalidDataException)],
            AllocationPerInputByte = 256,
            AllocationConstant = TemplateAllocation,
            Run = (input, work) =>
            {
                string folder = Folder(work, "template-config");
                Write(folder, "tokenizer_config.json", input);
                var config = ChatTemplateConfig.Load(folder);
                foreach (var name in config.Templates.Keys)
                {
                    var template = config.GetTemplate(name);
                    template.Render(TemplateVariables(), new DateTimeOffset(2025, 4, 9, 12, 0, 0, TimeSpan.Zero));
                }
            },
        },
        new()
        {
            Name = "adapter-config",
            Seeds = () =>
            {
                // The fixture LoRA's config, and the same as an aLoRA (invocation ids) and as a legacy IBM aLoRA (text).
                string text = File.ReadAllText(Shared("fixtures", "stories260K", "lora-all", "adapter_config.json"));
                var alora = JsonNode.Parse(text)!.AsObject();
                alora["alora_invocation_tokens"] = new JsonArray(13, 473, 467);
                var legacy = JsonNode.Parse(text)!.AsObject();
                legacy["invocation_string"] = "\nQ:";
                return [Encoding.UTF8.GetBytes(text), Encoding.UTF8.GetBytes(alora.ToJsonString()), Encoding.UTF8.GetBytes(legacy.ToJsonString())];
            },
            Dictionary = [.. s_jsonTokens, "\"q_proj\"", "\"down_proj\"", "\"embed_tokens\"", "\"layers\"", "\".*\"", "\"(a+)+$\"", "\"alora_invocation_tokens\"", "\"invocation_string\""],
            Allowed = [typeof(ModelFormatException)],
            Run = (input, work) =>
            {
                string folder = Folder(work, "adapter-config");
                Write(folder, "adapter_config.json", input);
                CopyOnce(Shared("fixtures", "stories260K", "lora-all", "adapter_model.safetensors"), Path.Combine(folder, "adapter_model.safetensors"));
                using var adapter = LoraAdapter.Load(folder, s_storiesConfig.Value, "fuzz", s_storiesTokenizer.Value);
            },
        },
        new()
        {
            Name = "adapter-safetensors",
            Seeds = () => [File.ReadAllBytes(Shared("fixtures", "stories260K", "alora-q-k-v", "adapter_model.safetensors"))],
            HotBytes = 8 + 4096,
            Allowed = [typeof(ModelFormatException)],
            Run = (input, work) =>
            {
                string folder = Folder(work, "adapter-safetensors");
                CopyOnce(Shared("fixtures", "stories260K", "alora-q-k-v", "adapter_config.json"), Path.Combine(folder, "adapter_config.json"));
                Write(folder, "adapter_model.safetensors", input);
                using var adapter = LoraAdapter.Load(folder, s_storiesConfig.Value, "fuzz", s_storiesTokenizer.Value);
            },
        },
        new()
        {
            Name = "gguf-lora",
            Seeds = () => [GgufLoraSeed.Value],
            HotBytes = 16384,
            Allowed = [typeof(ModelFormatException)],
            Run = (input, work) =>
            {
                string path = Write(work, "lora.gguf", input);
                using var adapter = GgufLoraExport.Read(path, s_storiesConfig.Value, "fuzz");
            },
        },
        new()
        {
            // A structured-output constraint as a request gives it: the first byte picks the kind (r: regex, g: GBNF
            // grammar, s: JSON Schema, c: choices as JSON), the rest is its text; compiled against stories260K's
            // vocabulary and its first token mask computed.
            Name = "structured",
            NamesFile = false,
            Seeds = () =>
            [
                Encoding.UTF8.GetBytes("r[a-c]{1,3}( [0-9]+)?\\d*(x|yz)+"),
                Encoding.UTF8.GetBytes("groot ::= item (\",\" item)*\nitem ::= [a-z]+ | \"(\" root \")\""),
                Encoding.UTF8.GetBytes("s{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":0},\"b\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":3},\"maxItems\":2},\"c\":{\"enum\":[\"x\",\"y\"]},\"d\":{\"anyOf\":[{\"type\":\"null\"},{\"$ref\":\"#/$defs/n\"}]}},\"required\":[\"a\"],\"$defs\":{\"n\":{\"type\":\"number\"}}}"),
                Encoding.UTF8.GetBytes("c[\"yes\", \"no\", \"maybe\"]"),
            ],
            Dictionary = [.. s_jsonTokens, "*", "+", "?", "{1000000}", "(", ")", "|", "[^", "\\", "::=", "root", "\"$ref\": \"#\"", "\"minLength\": 100000000", "\"pattern\"", "\"anyOf\""],
            Allowed = [typeof(StructuredOutputException)],
            AllocationPerInputByte = 4096,
            AllocationConstant = 256L << 20,
            Run = (input, work) =>
            {
                if (input.Length == 0) return;
                string text = Encoding.UTF8.GetString(input.AsSpan(1));
                OutputConstraint constraint;
                switch ((char)input[0])
                {
                    case 'r': constraint = OutputConstraint.Regex(text); break;
                    case 'g': constraint = OutputConstraint.Grammar(text); break;
                    case 's' or 'c':
                        JsonNode? node;
                        try { node = JsonNode.Parse(text, documentOptions: Utf8Text.StrictJson); }
                        catch (System.Text.Json.JsonException) { return; }   // the server's JSON layer refuses it first
                        if (node is null) return;
                        if (input[0] == 's') constraint = OutputConstraint.JsonSchema(node);
                        else if (node is JsonArray { Count: > 0 } choices && choices.All(c => c is JsonValue v && v.GetValueKind() == System.Text.Json.JsonValueKind.String))
                            constraint = OutputConstraint.Choice(choices.Select(c => c!.GetValue<string>()));
                        else return;
                        break;
                    default: return;
                }
                var compiled = TokenConstraint.Compile(constraint, TokenVocabulary.For(s_storiesTokenizer.Value));
                compiled.Start().Prepare();
            },
        },
        new()
        {
            Name = "training-jsonl",
            Seeds = () =>
            [
                FirstLines(Shared("data", "activated-lora", "example_data.jsonl"), 3),
                FirstLines(Shared("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl"), 6),
                FirstLines(Shared("data", "fms-hf-tuning", "single_turn_chat.jsonl"), 4),
                Encoding.UTF8.GetBytes("{\"input_ids\": [1, 2, 3, 4], \"labels\": [-100, -100, 3, 4]}\n{\"prompt\": \"Once\", \"completion\": \" upon\"}\n"),
            ],
            Dictionary = [.. s_jsonTokens, "\"messages\"", "\"chat\"", "\"role\"", "\"content\"", "\"input_ids\"", "\"labels\"", "\"prompt\"", "\"completion\"", "\n", "-100"],
            Allowed = [typeof(TrainingDataException)],
            Run = (input, work) =>
            {
                string path = Write(work, "train.jsonl", input);
                TrainingDataLoader.Load(path, s_storiesTokenizer.Value, s_trainingChat.Value, new TrainingDataOptions { CutoffLength = 64 });
                TrainingDataLoader.Load(path, s_storiesTokenizer.Value, s_trainingChat.Value, new TrainingDataOptions { CutoffLength = 16, TrainOnAllTokens = true }, []);
            },
        },
    ];

    public static FuzzTarget Get(string name) => All.FirstOrDefault(t => t.Name == name)
        ?? throw new ArgumentException($"no fuzz target '{name}'; known: {string.Join(", ", All.Select(t => t.Name))}", nameof(name));

    // ---- inputs ----

    /// <summary>The chat templates of the shared tokenizers (chat_template.jinja and tokenizer_config.json's chat_template).</summary>
    private static IReadOnlyList<byte[]> TemplateSeeds()
    {
        var seeds = new List<byte[]>();
        foreach (var folder in Directory.GetDirectories(Shared("tokenizers")).Order(StringComparer.Ordinal))
        {
            string jinja = Path.Combine(folder, "chat_template.jinja");
            if (File.Exists(jinja)) seeds.Add(File.ReadAllBytes(jinja));
            string config = Path.Combine(folder, "tokenizer_config.json");
            if (File.Exists(config) && JsonNode.Parse(File.ReadAllText(config))?["chat_template"] is JsonValue value && value.TryGetValue(out string? text))
                seeds.Add(Encoding.UTF8.GetBytes(text));
        }
        // A template that exercises macros, recursion, loops and filters the model templates leave out.
        seeds.Add(Encoding.UTF8.GetBytes(
            "{% macro walk(node, depth) %}{{ node.name }}{% for c in node.children %}{{ walk(c, depth + 1) }}{% endfor %}{% endmacro %}" +
            "{% set ns = namespace(n=0) %}{% for m in messages recursive %}{% set ns.n = ns.n + 1 %}{{ loop.index }}:{{ m['role'] | upper }}" +
            "{{ m['content'] | trim | truncate(20) }}{% if loop.last %}{{ ns.n }}{% endif %}{% endfor %}{{ walk({'name': 'a', 'children': [{'name': 'b', 'children': []}]}, 0) }}" +
            "{{ messages | map(attribute='role') | join(',') }}{{ range(3) | list | tojson }}{{ '%s-%d' % ('x', 3) }}"));
        return seeds;
    }

    private static JsonObject TemplateVariables() => new()
    {
        ["messages"] = new JsonArray(
            new JsonObject { ["role"] = "system", ["content"] = "You are helpful." },
            new JsonObject { ["role"] = "user", ["content"] = "What is 2+2?" },
            new JsonObject { ["role"] = "assistant", ["content"] = "4" },
            new JsonObject { ["role"] = "user", ["content"] = "And 3+3?" }),
        ["add_generation_prompt"] = true,
        ["bos_token"] = "<s>",
        ["eos_token"] = "</s>",
    };

    private static byte[] FirstLines(string path, int count)
        => Encoding.UTF8.GetBytes(string.Join("\n", File.ReadLines(path).Take(count)) + "\n");

    // ---- helpers ----

    private static string Write(string folder, string name, byte[] bytes)
    {
        string path = Path.Combine(folder, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static string Folder(string work, string name)
    {
        string folder = Path.Combine(work, name);
        Directory.CreateDirectory(folder);
        return folder;
    }

    private static void CopyOnce(string from, string to)
    {
        if (!File.Exists(to)) File.Copy(from, to);
    }

    private static int s_sink;

    /// <summary>Reads the first and last byte of a tensor, so a range outside the file would fault here.</summary>
    private static void Touch(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > 0) s_sink += bytes[0] + bytes[^1];
    }
}
