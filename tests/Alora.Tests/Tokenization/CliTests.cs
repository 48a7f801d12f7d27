using System.CommandLine;
using System.Reflection;
using System.Text.Json;

namespace Alora.Tests.Tokenization;

[CollectionDefinition("Console", DisableParallelization = true)]
public sealed class ConsoleCollection;

/// <summary>`alora tokenize` / `alora detokenize` run in-process with stdin/stdout redirected.</summary>
[Collection("Console")]
public class CliTests
{
    private static Command CommandNamed(string method)
    {
        var type = Type.GetType("Alora.Cli.TokenizeCommands, Alora.Cli", throwOnError: true)!;
        return (Command)type.GetMethod(method, BindingFlags.Public | BindingFlags.Static)!.Invoke(null, null)!;
    }

    private static (int ExitCode, string Output, string Error) Run(string method, string input, params string[] args)
    {
        var (oldIn, oldOut, oldError) = (Console.In, Console.Out, Console.Error);
        var output = new StringWriter();
        var error = new StringWriter();
        try
        {
            Console.SetIn(new StringReader(input));
            Console.SetOut(output);
            Console.SetError(error);
            int exitCode = CommandNamed(method).Parse(args).Invoke();
            return (exitCode, output.ToString(), error.ToString());
        }
        finally
        {
            Console.SetIn(oldIn);
            Console.SetOut(oldOut);
            Console.SetError(oldError);
        }
    }

    private static List<JsonElement> Lines(string output) =>
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();

    [Theory]
    [InlineData("stories260K")]
    [InlineData("granite3")]
    public void TokenizeAndDetokenizeMatchFixtures(string name)
    {
        var rows = TokenizerFixtures.Rows(name).Take(40).ToList();
        string folder = TokenizerFixtures.FolderOf(name);
        string input = string.Join("\n", rows.Select(r => JsonSerializer.Serialize(new { text = r.Text }))) + "\n";

        var (code, output, error) = Run("Tokenize", input, "--model", folder);
        Assert.True(code == 0, error);
        var lines = Lines(output);
        Assert.Equal(rows.Count, lines.Count);
        for (int i = 0; i < rows.Count; i++)
            Assert.Equal(rows[i].Ids, lines[i].GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray());

        (code, output, error) = Run("Tokenize", input, "--model", folder, "--no-special");
        Assert.True(code == 0, error);
        lines = Lines(output);
        for (int i = 0; i < rows.Count; i++)
            Assert.Equal(rows[i].IdsNoSpecial, lines[i].GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray());

        string idsInput = string.Join("\n", rows.Select(r => JsonSerializer.Serialize(new { ids = r.Ids })));
        (code, output, error) = Run("Detokenize", idsInput, "--model", folder);
        Assert.True(code == 0, error);
        lines = Lines(output);
        for (int i = 0; i < rows.Count; i++) Assert.Equal(rows[i].ExpectedDecoded, lines[i].GetProperty("text").GetString());

        (code, output, error) = Run("Detokenize", idsInput, "--model", folder, "--skip-special");
        Assert.True(code == 0, error);
        lines = Lines(output);
        for (int i = 0; i < rows.Count; i++) Assert.Equal(rows[i].ExpectedDecodedSkipSpecial, lines[i].GetProperty("text").GetString());
    }

    [Fact]
    public void TokenizeReadsGguf()
    {
        var (code, output, error) = Run("Tokenize", "{\"text\": \"Once upon a time\"}\n", "--model", Alora.Tests.SharedPaths.Path("models", "stories260K", "stories260K.gguf"));
        Assert.True(code == 0, error);
        var expected = TokenizerFixtures.Load("stories260K").Encode("Once upon a time");
        Assert.Equal(expected, Lines(output)[0].GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray());
    }

    [Fact]
    public void BadLinesAreReportedWithTheirNumber()
    {
        string folder = TokenizerFixtures.FolderOf("stories260K");
        var (code, _, error) = Run("Tokenize", "{\"text\": \"ok\"}\n{\"txt\": \"typo\"}\n", "--model", folder);
        Assert.Equal(1, code);
        Assert.Contains("line 2", error);
        Assert.Contains("\"text\"", error);

        (code, _, error) = Run("Detokenize", "{\"ids\": [1, 2, 70000]}\n", "--model", folder);
        Assert.Equal(1, code);
        Assert.Contains("ids[2]", error);
        Assert.Contains("70000", error);

        (code, _, error) = Run("Tokenize", "not json\n", "--model", folder);
        Assert.Equal(1, code);
        Assert.Contains("not valid JSON", error);
    }
}
