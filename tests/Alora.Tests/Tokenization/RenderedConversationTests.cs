using System.Text.Json;

namespace Alora.Tests.Tokenization;

/// <summary>
/// Rendered chat conversations (shared/fixtures/templates/*.jsonl, the `ids` of `rendered` tokenized with
/// add_special_tokens=False by transformers.js): role markers and other special-token text in context.
/// </summary>
public class RenderedConversationTests
{
    public static TheoryData<string> TemplateFiles() => new("granite3", "granite3-vision", "granite3-vision-tokcfg", "llama3");

    [Theory, MemberData(nameof(TemplateFiles))]
    public void RenderedConversationsTokenizeAsTheFixtures(string file)
    {
        var failures = new List<string>();
        int checkedCount = 0;
        foreach (var line in File.ReadAllText(SharedPaths.Path("fixtures", "templates", file + ".jsonl")).Split('\n'))
        {
            if (line.Length == 0) continue;
            using var document = JsonDocument.Parse(line);
            var row = document.RootElement;
            if (!row.TryGetProperty("ids", out var idsElement) || !row.TryGetProperty("tokenizer", out var tokenizerName)) continue;
            var tokenizer = TokenizerFixtures.Load(tokenizerName.GetString()!);
            int[] expected = idsElement.EnumerateArray().Select(x => x.GetInt32()).ToArray();
            string rendered = row.GetProperty("rendered").GetString()!;
            int[] actual = tokenizer.Encode(rendered, addSpecialTokens: false);
            checkedCount++;
            if (!actual.SequenceEqual(expected))
                failures.Add($"{row.GetProperty("id").GetString()}: expected {TokenizerFixtures.Show(expected)}, got {TokenizerFixtures.Show(actual)}");
        }
        Assert.True(checkedCount > 0, $"{file}: no rows with ids");
        Assert.True(failures.Count == 0, string.Join("\n", failures.Take(5)));
    }

    [Fact]
    public void CertaintyInvocationIsFoundInRenderedGraniteConversations()
    {
        // IBM's uncertainty aLoRA is invoked by the "certainty" role header.
        var tokenizer = TokenizerFixtures.Load("granite3");
        int[] invocation = Alora.Tokenization.InvocationTokens.Encode(tokenizer, "<|start_of_role|>certainty<|end_of_role|>");
        int found = 0;
        foreach (var line in File.ReadAllText(SharedPaths.Path("fixtures", "templates", "granite3.jsonl")).Split('\n'))
        {
            if (line.Length == 0) continue;
            using var document = JsonDocument.Parse(line);
            string rendered = document.RootElement.GetProperty("rendered").GetString()!;
            if (!rendered.Contains("<|start_of_role|>certainty<|end_of_role|>", StringComparison.Ordinal)) continue;
            found++;
            int[] ids = document.RootElement.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
            Assert.Empty(Alora.Tokenization.InvocationTokens.CheckInConversation(tokenizer, invocation, rendered));
            int start = Alora.Tokenization.InvocationTokens.FindLast(ids, invocation);
            Assert.True(start >= 0);
            Assert.Equal(invocation, ids[start..(start + invocation.Length)]);
        }
        Assert.True(found > 0, "no granite3 template case uses the certainty role");
    }
}
