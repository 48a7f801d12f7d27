using System.Text.Json.Nodes;
using Alora.Inference;
using Alora.Tokenization.Templates;

namespace Alora;

/// <summary>
/// Turns a conversation into prompt ids as transformers' <c>apply_chat_template(..., tokenize=True)</c> does: the
/// model's chat template (or another one), rendered, then encoded without adding special tokens (the template
/// writes them). For an aLoRA it also answers how the prompt reaches the invocation: the template's generation
/// prompt may contain it; or, with no generation prompt, the adapter's invocation ids are appended to the
/// rendered conversation (the way IBM's intrinsics are invoked). The server and the <c>IChatClient</c> share it.
/// </summary>
public sealed class ChatPrompter
{
    private readonly LanguageModel _model;
    private readonly ChatTemplateConfig _config;
    private readonly ChatTemplate? _template;

    /// <param name="templatePath">A .jinja file or a JSON file with chat_template, used instead of the model's template.</param>
    public ChatPrompter(LanguageModel model, string? templatePath = null)
    {
        _model = model;
        _config = Directory.Exists(model.Path) ? ChatTemplateConfig.Load(model.Path) : ChatTemplateConfig.Empty();
        if (templatePath is not null) _template = ChatTemplateConfig.LoadTemplateFile(templatePath);
        else if (_config.HasTemplate) _template = _config.GetTemplate();
    }

    public bool HasTemplate => _template is not null;

    /// <summary>The rendered text and its ids. <paramref name="addGenerationPrompt"/> null means true.</summary>
    public (int[] Ids, string Text) Render(JsonArray messages, bool? addGenerationPrompt = null, JsonObject? templateVariables = null, string? adapterName = null)
    {
        var template = _template ?? throw new InvalidOperationException($"{_model.Path} has no chat template; give one (a .jinja file) or send prompt ids");
        var tokenizer = _model.Tokenizer ?? throw new InvalidOperationException($"{_model.Path} has no tokenizer to encode the rendered conversation");
        string text = _config.Apply(template, messages, addGenerationPrompt ?? true, (JsonObject?)templateVariables?.DeepClone());
        int[] ids = tokenizer.Encode(text, addSpecialTokens: false);
        if (addGenerationPrompt == false && adapterName is not null && _model.Adapters.TryGetValue(adapterName, out var adapter) && adapter.IsActivated
            && AdapterActivation.LastOccurrence(ids, adapter.InvocationTokens) < 0)
            ids = [.. ids, .. adapter.InvocationTokens!];
        return (ids, text);
    }

    /// <summary>
    /// The prompt of the next turn for the base model or an adapter: the template's generation prompt, or, for an aLoRA
    /// whose invocation that prompt lacks, the conversation with the adapter's invocation appended.
    /// </summary>
    public int[] RenderTurn(JsonArray messages, string? adapterName)
    {
        int[] ids = Render(messages, addGenerationPrompt: true, adapterName: adapterName).Ids;
        if (adapterName is not null && _model.Adapters[adapterName] is { IsActivated: true } adapter && AdapterActivation.LastOccurrence(ids, adapter.InvocationTokens) < 0)
            ids = Render(messages, addGenerationPrompt: false, adapterName: adapterName).Ids;
        return ids;
    }

    /// <summary>A readable form of an aLoRA's invocation: its invocation string (or decoded ids) and ids.</summary>
    public string DescribeInvocation(string adapterName)
    {
        var adapter = _model.Adapters[adapterName];
        string text = adapter.Config.InvocationString ?? _model.Tokenizer?.Decode(adapter.InvocationTokens!) ?? "";
        return $"{System.Text.Json.JsonSerializer.Serialize(text, new System.Text.Json.JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping })} (token ids [{string.Join(", ", adapter.InvocationTokens!)}])";
    }
}
