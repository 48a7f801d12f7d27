using Alora.Inference;

namespace Alora.Tests.Adapters;

/// <summary>The library's user-facing flow: one model, named adapters, PEFT's two KV reuse patterns.</summary>
public sealed class LanguageModelAdapterTests
{
    [Fact]
    public async Task BaseThenAloraOnOneCacheThenBaseAgain()
    {
        using var model = LanguageModel.Load(SharedPaths.Stories260K, cacheTokens: 1024);
        model.LoadAdapter("qa", SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"));
        model.LoadAdapter("story", SharedPaths.Path("fixtures", "stories260K", "lora-all"));
        Assert.Throws<ArgumentException>(() => model.LoadAdapter("qa", SharedPaths.Path("fixtures", "stories260K", "lora-all")));
        var e = Assert.Throws<KeyNotFoundException>(() => model.Adapter("nope"));
        Assert.Contains("qa, story", e.Message);

        var generator = model.CreateGenerator();
        using var conversation = model.NewSequence();
        int[] story = model.Encode("Lily had a red ball. She liked to play with it every day.");
        var (told, first) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = story, MaxTokens = 10 }, conversation);
        Assert.Equal(0, first.ReusedPromptTokens);

        // The intrinsic: the invocation after the conversation so far; everything before it is reused.
        int[] question = [.. story, .. told, .. model.Encode("\nQ: What did Lily have?\nA:", addSpecialTokens: false)];
        int cached = conversation.Length;   // the story and all generated tokens but the last (never fed back)
        Assert.Equal(story.Length + told.Length - 1, cached);
        var (_, asked) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = question, MaxTokens = 8, Adapter = model.Adapter("qa") }, conversation);
        int invocationStart = AdapterActivation.FindStart(question, model.Adapter("qa"))!.Value;
        Assert.True(invocationStart >= cached);
        Assert.Equal(cached, asked.ReusedPromptTokens);   // all of the base model's KV: nothing before the invocation is recomputed

        // Back to the base model: the adapter's positions are dropped, the base prefix is kept.
        var (_, again) = await AdapterForwardTests.CollectWithStats(generator, new GenerationRequest { PromptIds = [.. question, 300], MaxTokens = 2 }, conversation);
        Assert.Equal(invocationStart, again.ReusedPromptTokens);
    }

    private static async Task<(int[] Ids, GenerationStats Stats)> Collect(IAsyncEnumerable<GenerationUpdate> updates)
    {
        var ids = new List<int>();
        GenerationStats? stats = null;
        await foreach (var update in updates)
        {
            if (update.TokenId >= 0) ids.Add(update.TokenId);
            stats ??= update.Stats;
        }
        return ([.. ids], stats!);
    }

    /// <summary>The same flow through the engine: no handle is passed; the prefix cache finds the conversation by itself.</summary>
    [Fact]
    public async Task TheEngineReusesTheConversationForAnAloraByItselfAndAnswersAsTheHandlePathDoes()
    {
        using var model = LanguageModel.Load(SharedPaths.Stories260K, cacheTokens: 1024);
        model.LoadAdapter("qa", SharedPaths.Path("fixtures", "stories260K", "alora-q-k-v"));
        int[] story = model.Encode("Lily had a red ball. She liked to play with it every day.");
        var (told, first) = await Collect(model.GenerateAsync(new GenerationRequest { PromptIds = story, MaxTokens = 10 }));
        Assert.Equal(0, first.ReusedPromptTokens);

        int[] question = [.. story, .. told, .. model.Encode("\nQ: What did Lily have?\nA:", addSpecialTokens: false)];
        var (answer, asked) = await Collect(model.GenerateAsync(new GenerationRequest { PromptIds = question, MaxTokens = 8, AdapterName = "qa" }));
        int invocationStart = AdapterActivation.FindStart(question, model.Adapter("qa"))!.Value;
        int blockSize = model.Engine.Options.BlockSize;
        // Every full block the base model computed before the invocation's block: the story and the generated
        // tokens but the last (never fed back), rounded down to whole blocks.
        Assert.Equal(Math.Min(story.Length + told.Length - 1, invocationStart) / blockSize * blockSize, asked.ReusedPromptTokens);
        Assert.True(asked.ReusedPromptTokens > 0);
        Assert.Equal(asked.ReusedPromptTokens, (int)model.Engine.Metrics().PrefixCacheHitTokens);

        // The single-sequence path computes everything from scratch and gives the same answer.
        using var fresh = model.NewSequence();
        var (expected, _) = await AdapterForwardTests.CollectWithStats(model.CreateGenerator(),
            new GenerationRequest { PromptIds = question, MaxTokens = 8, Adapter = model.Adapter("qa") }, fresh);
        Assert.Equal(expected, answer);

        await model.UnloadAdapterAsync("qa");
        await Assert.ThrowsAsync<KeyNotFoundException>(async () => await Collect(model.GenerateAsync(new GenerationRequest { PromptIds = question, AdapterName = "qa" })));
    }
}
