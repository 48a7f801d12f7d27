using System.CommandLine;
using Alora.Tokenization.Templates;

namespace Alora.Cli;

/// <summary>`alora template`: renders chat templates for JSON-lines requests read from stdin.</summary>
internal static class TemplateCommands
{
    public static Command Template()
    {
        var model = new Option<string>("--model", "-m")
        {
            Description = "Hugging Face model folder (tokenizer_config.json, chat_template.jinja or chat_template.json)",
            Required = true,
        };
        var templateName = new Option<string?>("--template-name")
        {
            Description = "Named template to use (e.g. tool_use, rag) when the model has several",
        };
        var templateFile = new Option<string?>("--template-file")
        {
            Description = "Render with this template instead: a .jinja file, or a JSON file with a chat_template field",
        };
        var command = new Command("template",
            "Render the model's chat template. Reads {\"messages\": [...], \"add_generation_prompt\": bool, \"now\": \"2025-04-09\", ...} " +
            "lines on stdin and writes {\"rendered\": ...} lines (or {\"error\": ..., \"line\": n}).");
        command.Options.Add(model);
        command.Options.Add(templateName);
        command.Options.Add(templateFile);
        command.SetAction(parseResult =>
        {
            try
            {
                var config = ChatTemplateConfig.Load(parseResult.GetValue(model)!);
                string? file = parseResult.GetValue(templateFile);
                string? name = parseResult.GetValue(templateName);
                // Resolve and parse the template before reading input, so a missing or broken template is
                // reported once (exit code 2) rather than on every line.
                ChatTemplate template = file is null ? config.GetTemplate(name) : ChatTemplateConfig.LoadTemplateFile(file, name);
                int failures = ChatTemplateJsonLines.Run(config, Console.In, Console.Out, name, template);
                return failures == 0 ? 0 : 1;
            }
            catch (Exception e) when (e is TemplateException or IOException or InvalidDataException or InvalidOperationException or KeyNotFoundException)
            {
                Console.Error.WriteLine($"alora template: {e.Message}");
                return 2;
            }
        });
        return command;
    }
}
