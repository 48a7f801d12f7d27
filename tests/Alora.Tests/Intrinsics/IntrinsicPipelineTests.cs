using Alora.Inference;
using Alora.Intrinsics;
using Alora.Serving;

namespace Alora.Tests.Intrinsics;

/// <summary>
/// A conversation through base turns and aLoRA intrinsic calls on stories260K: each intrinsic call reuses exactly
/// the conversation's full KV blocks (the base model computed them; the aLoRA's invocation comes after them).
/// </summary>
public sealed class IntrinsicPipelineTests
{
    private const int BlockSize = 16;
    // Messages are written one after the other (the assistant's text continues the user's), so the conversation's
    // text only ever grows; the instruction starts with the fixture aLoRA's invocation "\nQ:".
    private const string Template = "{{ bos_token }}{% for m in messages %}{{ m['content'] }}{% endfor %}";
    private const string IoYaml = """
        model: ~
        response_format: ~
        transformations: ~
        instruction: "\nQ: Does a {noun} appear?\nA:"
        parameters:
          max_completion_tokens: 3
          temperature: 0.0
        """;

    [Fact]
    public async Task IntrinsicCallsReuseTheConversationsFullBlocksExactly()
    {
        using var folder = new TempFolder();
        string template = folder.File("template.jinja");
        await File.WriteAllTextAsync(template, Template);
        using var model = LanguageModel.Load(SharedPaths.Stories260K, maxBatchTokens: 64,
            engineOptions: new EngineOptions { KvCacheTokens = 2048, BlockSize = BlockSize, MaxTokensPerStep = 256 });
        model.LoadAdapter("qa", SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"));
        var pipeline = new IntrinsicPipeline(model, new ChatPrompter(model, template),
            new Dictionary<string, IntrinsicDefinition> { ["qa"] = IntrinsicDefinition.Parse(IoYaml) },
            new PipelineOptions { MaxTokens = 40 });

        var answer = await pipeline.AskAsync("Once upon a time");
        // The base turn's KV: its prompt and every generated token fed back (all but the last when it stopped on length).
        int computed = answer.PromptTokens + answer.GeneratedTokens - (answer.Finish == FinishReason.Length ? 1 : 0);
        Assert.Equal(5, answer.PromptTokens);   // <s> Once upon a time
        Assert.Equal(40, answer.GeneratedTokens);
        Assert.Equal(FinishReason.Length, answer.Finish);
        Assert.Equal(44, computed);   // 5 + 40 - 1: two full blocks of 16

        var check = await pipeline.CallAsync("qa", new Dictionary<string, string> { ["noun"] = "dog" });
        Assert.Equal(32, check.CachedTokens);
        Assert.Equal(check.PromptTokens - 32, check.ComputedTokens);
        // "\nQ: Does a dog appear?\nA:" after the story is 18 tokens: 13 473 467 | 410 455 414 406 261 400 428 261 339 411 295 450 | 13 447 467.
        Assert.Equal(45 + 18, check.PromptTokens);
        Assert.Equal(45, pipeline.ConversationIds.Count);   // the intrinsic left the conversation alone

        // The next base turn continues the conversation; a second intrinsic call reuses all of its full blocks.
        var again = await pipeline.AskAsync(" The end. Then");
        Assert.Equal(32, again.CachedTokens);   // the aLoRA's block at 32..47 is not the base model's
        int computed2 = again.PromptTokens + again.GeneratedTokens - (again.Finish == FinishReason.Length ? 1 : 0);
        var check2 = await pipeline.CallAsync("qa", new Dictionary<string, string> { ["noun"] = "cat" });
        Assert.Equal(computed2 / BlockSize * BlockSize, check2.CachedTokens);
        Assert.True(check2.CachedTokens >= 80, $"cached {check2.CachedTokens}");
        Assert.Equal(4, pipeline.Steps.Count);
        Assert.All(pipeline.Steps, s => Assert.True(s.TimeToFirstTokenSeconds > 0));
    }
}
