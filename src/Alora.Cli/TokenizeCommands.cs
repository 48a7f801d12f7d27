using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using Alora.Tokenization;

namespace Alora.Cli;

/// <summary>`alora tokenize` and `alora detokenize`: JSON lines in on stdin, JSON lines out on stdout.</summary>
internal static class TokenizeCommands
{
    private static readonly JsonSerializerOptions OutputJson = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static Option<string> ModelOption() => new("--model", "-m") { Description = "Hugging Face model folder (tokenizer.json) or .gguf file", Required = true };

    public static Command Tokenize()
    {
        var model = ModelOption();
        var noSpecial = new Option<bool>("--no-special") { Description = "Do not add the special tokens the tokenizer adds (e.g. BOS); special-token text is still matched" };
        var command = new Command("tokenize", "Read {\"text\": …} lines on stdin, write {\"ids\": […]} lines");
        command.Options.Add(model);
        command.Options.Add(noSpecial);
        command.SetAction(parse =>
        {
            var tokenizer = Tokenizer.Load(parse.GetValue(model)!);
            return RunTokenize(tokenizer, Console.In, Console.Out, Console.Error, addSpecialTokens: !parse.GetValue(noSpecial));
        });
        return command;
    }

    public static Command Detokenize()
    {
        var model = ModelOption();
        var skipSpecial = new Option<bool>("--skip-special") { Description = "Leave special tokens out of the text" };
        var command = new Command("detokenize", "Read {\"ids\": […]} lines on stdin, write {\"text\": …} lines");
        command.Options.Add(model);
        command.Options.Add(skipSpecial);
        command.SetAction(parse =>
        {
            var tokenizer = Tokenizer.Load(parse.GetValue(model)!);
            return RunDetokenize(tokenizer, Console.In, Console.Out, Console.Error, skipSpecialTokens: parse.GetValue(skipSpecial));
        });
        return command;
    }

    /// <summary>One {"ids": […]} line per {"text": …} line; a bad line gets an error naming it and exit code 1.</summary>
    internal static int RunTokenize(Tokenizer tokenizer, TextReader input, TextWriter output, TextWriter error, bool addSpecialTokens)
    {
        return ForEachLine(input, error, (root, lineNumber) =>
        {
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("text", out var text) || text.ValueKind != JsonValueKind.String)
                return $"line {lineNumber}: expected {{\"text\": \"…\"}}, found {Truncate(root.GetRawText())}";
            output.WriteLine(JsonSerializer.Serialize(new { ids = tokenizer.Encode(text.GetString()!, addSpecialTokens) }, OutputJson));
            return null;
        });
    }

    /// <summary>One {"text": …} line per {"ids": […]} line; a bad line gets an error naming it and exit code 1.</summary>
    internal static int RunDetokenize(Tokenizer tokenizer, TextReader input, TextWriter output, TextWriter error, bool skipSpecialTokens)
    {
        return ForEachLine(input, error, (root, lineNumber) =>
        {
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("ids", out var idsElement) || idsElement.ValueKind != JsonValueKind.Array)
                return $"line {lineNumber}: expected {{\"ids\": [...]}}, found {Truncate(root.GetRawText())}";
            var ids = new int[idsElement.GetArrayLength()];
            int index = 0;
            foreach (var item in idsElement.EnumerateArray())
            {
                if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out int id) || id < 0 || id >= tokenizer.VocabSize)
                    return $"line {lineNumber}: ids[{index}] is {item.GetRawText()}, expected a token id in 0..{tokenizer.VocabSize - 1}";
                ids[index++] = id;
            }
            output.WriteLine(JsonSerializer.Serialize(new { text = tokenizer.Decode(ids, skipSpecialTokens) }, OutputJson));
            return null;
        });
    }

    // ReadLine splits on \n, \r and \r\n only (not on U+0085/U+2028, which JSON strings may hold raw); raw \r cannot occur inside JSON strings.
    private static int ForEachLine(TextReader input, TextWriter error, Func<JsonElement, int, string?> handle)
    {
        int lineNumber = 0;
        string? line;
        while ((line = input.ReadLine()) != null)
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            string? problem;
            try
            {
                using var document = JsonDocument.Parse(line);
                problem = handle(document.RootElement, lineNumber);
            }
            catch (JsonException e)
            {
                problem = $"line {lineNumber}: not valid JSON ({e.Message})";
            }
            if (problem != null)
            {
                error.WriteLine($"error: {problem}");
                return 1;
            }
        }
        return 0;
    }

    private static string Truncate(string text) => text.Length > 80 ? text[..80] + "…" : text;
}
