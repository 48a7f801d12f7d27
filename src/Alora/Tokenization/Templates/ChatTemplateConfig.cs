using System.Text.Json;
using System.Text.Json.Nodes;

namespace Alora.Tokenization.Templates;

/// <summary>
/// What a Hugging Face model folder says about chat formatting: the special tokens of
/// tokenizer_config.json and the chat template(s), found with transformers' precedence:
/// <c>chat_template.jinja</c>, else <c>chat_template.json</c>, else tokenizer_config.json's
/// <c>chat_template</c> (a string, or a list of <c>{"name", "template"}</c>). Named templates in
/// <c>additional_chat_templates/*.jinja</c> are added as well.
/// </summary>
public sealed class ChatTemplateConfig
{
    public const string DefaultTemplateName = "default";

    private readonly Dictionary<string, string> _templates;
    private readonly Dictionary<string, string> _templateSources;
    private readonly Dictionary<string, ChatTemplate> _parsed = new(StringComparer.Ordinal);
    private readonly Lock _parseLock = new();

    private ChatTemplateConfig(string? bos, string? eos, string? unk, string? pad, bool addBos,
        Dictionary<string, string> templates, Dictionary<string, string> templateSources)
    {
        BosToken = bos;
        EosToken = eos;
        UnkToken = unk;
        PadToken = pad;
        AddBosToken = addBos;
        _templates = templates;
        _templateSources = templateSources;
    }

    public string? BosToken { get; }
    public string? EosToken { get; }
    public string? UnkToken { get; }
    public string? PadToken { get; }

    /// <summary>tokenizer_config.json's add_bos_token (false when absent).</summary>
    public bool AddBosToken { get; }

    /// <summary>Template sources by name: "default" plus named ones ("tool_use", "rag", ...).</summary>
    public IReadOnlyDictionary<string, string> Templates => _templates;

    /// <summary>Reads tokenizer_config.json (optional when a chat_template file is present),
    /// chat_template.jinja / chat_template.json and additional_chat_templates/.</summary>
    public static ChatTemplateConfig Load(string modelFolder)
    {
        ArgumentNullException.ThrowIfNull(modelFolder);
        if (!Directory.Exists(modelFolder))
            throw new DirectoryNotFoundException($"model folder '{modelFolder}' does not exist");

        string configPath = Path.Combine(modelFolder, "tokenizer_config.json");
        JsonObject config = [];
        if (File.Exists(configPath)) config = ReadObject(configPath);

        var templates = new Dictionary<string, string>(StringComparer.Ordinal);
        var sources = new Dictionary<string, string>(StringComparer.Ordinal);
        string jinjaPath = Path.Combine(modelFolder, "chat_template.jinja");
        string jsonPath = Path.Combine(modelFolder, "chat_template.json");
        if (File.Exists(jinjaPath))
        {
            templates[DefaultTemplateName] = File.ReadAllText(jinjaPath);
            sources[DefaultTemplateName] = jinjaPath;
        }
        else if (File.Exists(jsonPath))
        {
            ReadTemplateField(ReadObject(jsonPath), jsonPath, templates, sources);
        }
        else if (config.ContainsKey("chat_template"))
        {
            ReadTemplateField(config, configPath, templates, sources);
        }

        string additionalFolder = Path.Combine(modelFolder, "additional_chat_templates");
        if (Directory.Exists(additionalFolder))
        {
            foreach (string file in Directory.GetFiles(additionalFolder, "*.jinja").Order(StringComparer.Ordinal))
            {
                string name = Path.GetFileNameWithoutExtension(file);
                if (templates.ContainsKey(name)) continue;
                templates[name] = File.ReadAllText(file);
                sources[name] = file;
            }
        }

        return new ChatTemplateConfig(
            SpecialToken(config, "bos_token", configPath), SpecialToken(config, "eos_token", configPath),
            SpecialToken(config, "unk_token", configPath), SpecialToken(config, "pad_token", configPath),
            config["add_bos_token"] is JsonValue addBos && addBos.GetValueKind() == JsonValueKind.True,
            templates, sources);
    }

    /// <summary>Loads one template file: a <c>.jinja</c> file is the template itself; a JSON file
    /// (chat_template.json or a tokenizer_config.json) is read for its chat_template field, picking
    /// <paramref name="name"/> when that field is a list of named templates.</summary>
    public static ChatTemplate LoadTemplateFile(string path, string? name = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"template file '{path}' does not exist", path);
        if (!path.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            return ChatTemplate.Parse(File.ReadAllText(path), path);
        var templates = new Dictionary<string, string>(StringComparer.Ordinal);
        var sources = new Dictionary<string, string>(StringComparer.Ordinal);
        ReadTemplateField(ReadObject(path), path, templates, sources);
        return new ChatTemplateConfig(null, null, null, null, false, templates, sources).GetTemplate(name);
    }

    private static JsonObject ReadObject(string path)
    {
        string text = File.ReadAllText(path);
        if (Formats.Utf8Text.DescribeInvalid(text) is { } bad) throw new InvalidDataException($"{path}: {bad}");
        try
        {
            return JsonNode.Parse(text, documentOptions: Formats.Utf8Text.StrictJson) as JsonObject
                ?? throw new InvalidDataException($"{path}: expected a JSON object at the top level");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: invalid JSON: {e.Message}", e);
        }
    }

    /// <summary>"chat_template" is a string, or a list of {"name": ..., "template": ...}.</summary>
    private static void ReadTemplateField(JsonObject obj, string path, Dictionary<string, string> templates, Dictionary<string, string> sources)
    {
        var field = obj["chat_template"];
        switch (field)
        {
            case null:
                return;
            case JsonValue value when value.GetValueKind() == JsonValueKind.String:
                templates[DefaultTemplateName] = value.GetValue<string>();
                sources[DefaultTemplateName] = path + ":chat_template";
                return;
            case JsonArray list:
                for (int i = 0; i < list.Count; i++)
                {
                    if (list[i] is not JsonObject entry ||
                        entry["name"] is not JsonValue name || name.GetValueKind() != JsonValueKind.String ||
                        entry["template"] is not JsonValue template || template.GetValueKind() != JsonValueKind.String)
                        throw new InvalidDataException(
                            $"{path}: chat_template[{i}] must be an object with string fields \"name\" and \"template\", found {list[i]?.ToJsonString() ?? "null"}");
                    string templateName = name.GetValue<string>();
                    templates[templateName] = template.GetValue<string>();
                    sources[templateName] = $"{path}:chat_template[{templateName}]";
                }
                return;
            default:
                throw new InvalidDataException(
                    $"{path}: chat_template must be a string or a list of {{\"name\", \"template\"}} objects, found {field.GetValueKind()}");
        }
    }

    /// <summary>A special token is a string, an AddedToken object ({"content": ...}), or null.</summary>
    private static string? SpecialToken(JsonObject config, string field, string path) => config[field] switch
    {
        null => null,
        JsonValue value when value.GetValueKind() == JsonValueKind.String => value.GetValue<string>(),
        JsonObject added when added["content"] is JsonValue content && content.GetValueKind() == JsonValueKind.String => content.GetValue<string>(),
        var other => throw new InvalidDataException(
            $"{path}: {field} must be a string or an AddedToken object with a string \"content\", found {other.ToJsonString()}"),
    };

    /// <summary>The parsed template of that name (null: "default", or the only one there is). Parsed once
    /// and cached.</summary>
    public ChatTemplate GetTemplate(string? name = null)
    {
        string key = ResolveName(name);
        lock (_parseLock)
        {
            if (!_parsed.TryGetValue(key, out var template))
            {
                template = ChatTemplate.Parse(_templates[key], _templateSources[key]);
                _parsed[key] = template;
            }
            return template;
        }
    }

    private string ResolveName(string? name)
    {
        if (_templates.Count == 0)
            throw new InvalidOperationException(
                "this model has no chat template: none of chat_template.jinja, chat_template.json or tokenizer_config.json's chat_template exists");
        if (name is null)
        {
            if (_templates.ContainsKey(DefaultTemplateName)) return DefaultTemplateName;
            if (_templates.Count == 1) return _templates.Keys.First();
            throw new InvalidOperationException(
                $"this model has several chat templates and none is named 'default'; pick one of: {string.Join(", ", _templates.Keys)}");
        }
        if (_templates.ContainsKey(name)) return name;
        throw new KeyNotFoundException($"no chat template named '{name}'; available: {string.Join(", ", _templates.Keys)}");
    }

    /// <summary>
    /// Renders like transformers' <c>apply_chat_template(messages, add_generation_prompt=..., **kwargs)</c>:
    /// the template sees <c>messages</c>, <c>add_generation_prompt</c>, the special tokens that are set
    /// (bos_token, eos_token, unk_token, pad_token), <c>tools</c> and <c>documents</c> (None when absent),
    /// and every extra variable (which override the defaults, as kwargs do).
    /// </summary>
    public string Apply(JsonArray messages, bool addGenerationPrompt, JsonObject? extraVariables = null,
        DateTimeOffset? now = null, string? templateName = null)
        => Apply(GetTemplate(templateName), messages, addGenerationPrompt, extraVariables, now);

    /// <summary>As <see cref="Apply(JsonArray, bool, JsonObject?, DateTimeOffset?, string?)"/> with another template (a server's --chat-template) and this config's special tokens.</summary>
    public string Apply(ChatTemplate template, JsonArray messages, bool addGenerationPrompt, JsonObject? extraVariables = null, DateTimeOffset? now = null)
    {
        ArgumentNullException.ThrowIfNull(template);
        ArgumentNullException.ThrowIfNull(messages);
        var variables = BuildVariables(messages, addGenerationPrompt, extraVariables);
        return template.Render(variables, now);
    }

    /// <summary>A config with no special tokens and no templates (a model without tokenizer_config.json, or a GGUF file).</summary>
    public static ChatTemplateConfig Empty() => new(null, null, null, null, false, new(StringComparer.Ordinal), new(StringComparer.Ordinal));

    /// <summary>True when the model has at least one chat template.</summary>
    public bool HasTemplate => _templates.Count > 0;

    internal IReadOnlyDictionary<string, object?> BuildVariables(JsonArray messages, bool addGenerationPrompt, JsonObject? extraVariables)
    {
        var variables = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["tools"] = null,
            ["documents"] = null,
        };
        if (BosToken is not null) variables["bos_token"] = BosToken;
        if (EosToken is not null) variables["eos_token"] = EosToken;
        if (UnkToken is not null) variables["unk_token"] = UnkToken;
        if (PadToken is not null) variables["pad_token"] = PadToken;
        if (extraVariables is not null)
            foreach (var (name, node) in extraVariables) variables[name] = TemplateJson.FromNode(node);
        variables["messages"] = TemplateJson.FromNode(messages);
        variables["add_generation_prompt"] = addGenerationPrompt;
        return variables;
    }
}
