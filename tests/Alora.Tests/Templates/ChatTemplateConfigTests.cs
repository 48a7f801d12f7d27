using System.Text.Json.Nodes;
using Alora.Tokenization.Templates;

namespace Alora.Tests.Templates;

/// <summary>tokenizer_config.json / chat_template.json / chat_template.jinja handling and the
/// JSON-lines protocol of `alora template`.</summary>
public sealed class ChatTemplateConfigTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "alora-chat-template-tests-" + Guid.NewGuid().ToString("N"));

    public ChatTemplateConfigTests() => Directory.CreateDirectory(_folder);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private void Write(string name, string text)
    {
        string path = Path.Combine(_folder, name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, text);
    }

    private static JsonArray UserMessage(string text) => new(new JsonObject { ["role"] = "user", ["content"] = text });

    [Fact]
    public void Granite3_folder_prefers_chat_template_jinja_and_reads_special_tokens()
    {
        var config = ChatTemplateConfig.Load(SharedPaths.Path("tokenizers", "granite3"));
        Assert.Equal("<|end_of_text|>", config.BosToken);
        Assert.Equal("<|end_of_text|>", config.EosToken);
        Assert.Equal("<|end_of_text|>", config.UnkToken);
        Assert.Equal("<|end_of_text|>", config.PadToken);
        Assert.False(config.AddBosToken);
        Assert.Equal(File.ReadAllText(SharedPaths.Path("tokenizers", "granite3", "chat_template.jinja")), config.Templates["default"]);
        string rendered = config.Apply(UserMessage("Hi"), addGenerationPrompt: true, now: new DateTimeOffset(2025, 4, 9, 0, 0, 0, TimeSpan.Zero));
        Assert.StartsWith("<|start_of_role|>system<|end_of_role|>Knowledge Cutoff Date: April 2024.\nToday's Date: April 09, 2025.", rendered, StringComparison.Ordinal);
        Assert.EndsWith("<|start_of_role|>user<|end_of_role|>Hi<|end_of_text|>\n<|start_of_role|>assistant<|end_of_role|>", rendered, StringComparison.Ordinal);
    }

    [Fact]
    public void Qwen3_null_tokens_stay_unset_and_llama3_has_no_add_bos()
    {
        var qwen = ChatTemplateConfig.Load(SharedPaths.Path("tokenizers", "qwen3"));
        Assert.Null(qwen.BosToken);
        Assert.Null(qwen.UnkToken);
        Assert.Equal("<|im_end|>", qwen.EosToken);
        Assert.Equal("<|endoftext|>", qwen.PadToken);
        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
            qwen.Apply(UserMessage("Hi"), true, new JsonObject { ["enable_thinking"] = false }));

        var llama = ChatTemplateConfig.Load(SharedPaths.Path("tokenizers", "llama3"));
        Assert.Equal("<|begin_of_text|>", llama.BosToken);
        Assert.False(llama.AddBosToken);
        Assert.Equal("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            llama.Apply(UserMessage("  Hi \n"), false));
    }

    [Fact]
    public void Added_token_objects_and_add_bos_token_are_read()
    {
        var config = ChatTemplateConfig.Load(SharedPaths.Path("tokenizers", "maykeye-tinyllama-v0"));
        Assert.Equal("<s>", config.BosToken);
        Assert.Equal("</s>", config.EosToken);
        Assert.Equal("<unk>", config.UnkToken);
        Assert.Null(config.PadToken);
        Assert.Empty(config.Templates);
        var error = Assert.Throws<InvalidOperationException>(() => config.GetTemplate());
        Assert.Contains("no chat template", error.Message, StringComparison.Ordinal);

        Assert.True(ChatTemplateConfig.Load(SharedPaths.Path("tokenizers", "tinyllama-special-tokens")).AddBosToken);
    }

    [Fact]
    public void Named_template_list_gives_default_and_named_templates()
    {
        Write("tokenizer_config.json", """
            {"bos_token": {"__type": "AddedToken", "content": "<s>"}, "eos_token": "</s>", "add_bos_token": true,
             "chat_template": [{"name": "default", "template": "D{{ messages|length }}{{ bos_token }}"},
                               {"name": "tool_use", "template": "T{{ tools|length }}"},
                               {"name": "rag", "template": "R{{ documents[0].text }}"}]}
            """);
        var config = ChatTemplateConfig.Load(_folder);
        Assert.True(config.AddBosToken);
        Assert.Equal(["default", "tool_use", "rag"], config.Templates.Keys.ToArray());
        Assert.Equal("D1<s>", config.Apply(UserMessage("x"), false));
        Assert.Equal("T2", config.Apply(UserMessage("x"), false, new JsonObject { ["tools"] = new JsonArray(1, 2) }, templateName: "tool_use"));
        Assert.Equal("Rdoc", config.Apply(UserMessage("x"), false,
            new JsonObject { ["documents"] = new JsonArray(new JsonObject { ["text"] = "doc" }) }, templateName: "rag"));
        Assert.Same(config.GetTemplate("rag"), config.GetTemplate("rag"));
        var missing = Assert.Throws<KeyNotFoundException>(() => config.GetTemplate("nope"));
        Assert.Contains("default, tool_use, rag", missing.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Precedence_is_jinja_file_then_json_file_then_tokenizer_config()
    {
        Write("tokenizer_config.json", """{"chat_template": "from-config"}""");
        Assert.Equal("from-config", ChatTemplateConfig.Load(_folder).Apply([], false));
        Write("chat_template.json", """{"chat_template": "from-json"}""");
        Assert.Equal("from-json", ChatTemplateConfig.Load(_folder).Apply([], false));
        Write("chat_template.jinja", "from-jinja\n");
        Assert.Equal("from-jinja", ChatTemplateConfig.Load(_folder).Apply([], false));
        Write("additional_chat_templates/tool_use.jinja", "extra");
        Assert.Equal("extra", ChatTemplateConfig.Load(_folder).Apply([], false, templateName: "tool_use"));
    }

    [Fact]
    public void Absent_tools_and_documents_are_none_and_kwargs_override()
    {
        Write("tokenizer_config.json", """{"eos_token": "</s>", "chat_template": "{{ tools is none }} {{ documents is none }} {{ eos_token }} {{ add_generation_prompt }} {{ custom }}"}""");
        var config = ChatTemplateConfig.Load(_folder);
        Assert.Equal("True True </s> True 5", config.Apply([], true, new JsonObject { ["custom"] = 5 }));
        Assert.Equal("False True EOS False ", config.Apply([], false, new JsonObject { ["tools"] = new JsonArray(), ["eos_token"] = "EOS" }));
    }

    [Theory]
    [InlineData("""{"chat_template": 5}""", "chat_template must be a string or a list")]
    [InlineData("""{"chat_template": [{"name": "x"}]}""", "chat_template[0] must be an object with string fields")]
    [InlineData("""{"eos_token": 3, "chat_template": "x"}""", "eos_token must be a string or an AddedToken")]
    [InlineData("""{"chat_template": "x",""", "invalid JSON")]
    public void Bad_config_names_file_and_field(string json, string fragment)
    {
        Write("tokenizer_config.json", json);
        var error = Assert.Throws<InvalidDataException>(() => ChatTemplateConfig.Load(_folder));
        Assert.Contains("tokenizer_config.json", error.Message, StringComparison.Ordinal);
        Assert.Contains(fragment, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Json_lines_render_every_fixture_line_through_the_cli_protocol()
    {
        var config = ChatTemplateConfig.Load(SharedPaths.Path("tokenizers", "granite3"));
        string fixture = File.ReadAllText(SharedPaths.Path("fixtures", "templates", "granite3.jsonl"));
        var records = fixture.Split('\n').Where(l => l.Length > 0).Select(l => JsonNode.Parse(l)!).ToList();
        string input = string.Join('\n', records.Select(r => r["input"]!.ToJsonString()));
        var output = new StringWriter();

        int failures = ChatTemplateJsonLines.Run(config, new StringReader(input), output);

        Assert.Equal(0, failures);
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(records.Count, lines.Length);
        for (int i = 0; i < records.Count; i++)
        {
            string expected = (records[i]["jinja2_rendered"] ?? records[i]["rendered"])!.GetValue<string>();
            Assert.Equal(expected, JsonNode.Parse(lines[i])!["rendered"]!.GetValue<string>());
        }
    }

    [Fact]
    public void Json_lines_report_bad_lines_and_continue()
    {
        Write("chat_template.jinja", "{% for m in messages %}{{ m.content }}{% endfor %}{{ strftime_now('%Y') }}");
        var config = ChatTemplateConfig.Load(_folder);
        string input = """
            {"messages": [{"role": "user", "content": "a"}], "now": "2031-02-03"}
            not json
            {"messages": "oops"}

            {"messages": [], "now": "yesterday"}
            {"messages": [{"content": "b"}], "add_generation_prompt": true, "now": "1999-12-31T23:00:00"}
            """;
        var output = new StringWriter();
        int failures = ChatTemplateJsonLines.Run(config, new StringReader(input), output);
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!.AsObject()).ToList();
        Assert.Equal(3, failures);
        Assert.Equal(5, lines.Count);
        Assert.Equal("a2031", lines[0]["rendered"]!.GetValue<string>());
        Assert.Contains("input line 2: invalid JSON", lines[1]["error"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Contains("\"messages\" must be a list", lines[2]["error"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(5, lines[3]["line"]!.GetValue<int>());
        Assert.Contains("\"now\" is not a date: 'yesterday'", lines[3]["error"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal("b1999", lines[4]["rendered"]!.GetValue<string>());
    }
}
