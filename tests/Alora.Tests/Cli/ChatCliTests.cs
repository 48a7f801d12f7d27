using System.Text.RegularExpressions;

namespace Alora.Tests.Cli;

/// <summary>`alora chat` driven through standard input: adapters switch on one conversation and the reuse shows.</summary>
[Collection("Console")]
public sealed partial class ChatCliTests
{
    [GeneratedRegex(@"\[(?<who>[a-z]+): (?<prompt>\d+) prompt tokens, (?<cached>\d+) cached, TTFT [\d.]+ ms, (?<generated>\d+) tokens\]")]
    private static partial Regex StatsLine();

    [Fact]
    public void AScriptedSessionSwitchesAdaptersAndReportsReuse()
    {
        using var folder = new TempFolder();
        string template = folder.File("chat.jinja");
        File.WriteAllText(template, "{% for m in messages %}{% if m['role'] == 'user' %}{{ '\\nUser: ' }}{% elif m['role'] == 'assistant' %}{{ '\\nStory: ' }}{% endif %}{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}{{ '\\nStory:' }}{% endif %}");
        string script = "Lily had a red ball. She liked to play with it every day in the park.\n/use qa\nWhat did Lily have?\n/use nope\n/use base\nThen what happened?\n/quit\n";
        var (code, output) = CliRunner.RunWithInput(script, "ChatCommands", "Chat",
            "--model", SharedPaths.Stories260K, "--adapter", $"qa={SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v")}",
            "--chat-template", template, "--temperature", "0", "-n", "12");
        Assert.Equal(0, code);
        var turns = StatsLine().Matches(output).Select(m => (Who: m.Groups["who"].Value, Prompt: int.Parse(m.Groups["prompt"].Value), Cached: int.Parse(m.Groups["cached"].Value))).ToArray();
        Assert.Equal(["base", "qa", "base"], turns.Select(t => t.Who));
        Assert.Equal(0, turns[0].Cached);
        // The aLoRA turn reuses the first turn's full blocks (16 tokens each) computed by the base model...
        Assert.True(turns[1].Cached >= 16 && turns[1].Cached % 16 == 0, output);
        Assert.True(turns[1].Cached <= turns[0].Prompt + 11);
        // ...and the next base turn reuses the base blocks again, not the aLoRA's.
        Assert.True(turns[2].Cached >= turns[1].Cached, output);
        Assert.Contains("/use NAME: one of base, qa", output);
    }
}
