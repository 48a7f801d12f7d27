using Alora.Inference;
using Alora.Models;
using Alora.Serving;
using Alora.Tests.Models;

namespace Alora.Tests.Serving;

/// <summary>
/// The prefix cache, with exact counts (blocks of 4 tokens): it serves a request only the blocks that were
/// computed exactly as the request would compute them (same tokens, same prefix, base model before the
/// adapter's activation start, the same adapter from there on), and every served answer equals a recompute.
/// </summary>
public sealed class PrefixCacheTests : IClassFixture<BatchingTests.Stories>, IDisposable
{
    private const int Block = 4;
    private static readonly int[] Invocation = [13, 473, 467];
    private readonly EngineTestKit _kit;
    private readonly DecoderModel _model;
    private readonly ForwardAdapter _aloraA, _aloraB, _lora;

    public PrefixCacheTests(BatchingTests.Stories stories)
    {
        _kit = new EngineTestKit(stories.Weights);
        _model = new DecoderModel(stories.Weights, maxBatchTokens: 32);
        var random = new Random(42);
        _aloraA = _kit.RandomAdapter(random, "alora-a", Invocation);
        _aloraB = _kit.RandomAdapter(random, "alora-b", Invocation);
        _lora = _kit.RandomAdapter(random, "lora", null);
    }

    public void Dispose()
    {
        _model.Dispose();
        _kit.Dispose();
    }

    private EngineDriver NewDriver(bool prefixCaching = true, int cacheTokens = 512)
    {
        var driver = new EngineDriver(_model, new EngineOptions { KvCacheTokens = cacheTokens, BlockSize = Block, MaxTokensPerStep = 64, PrefixCaching = prefixCaching });
        driver.Engine.LoadAdapter("alora-a", _aloraA);
        driver.Engine.LoadAdapter("alora-b", _aloraB);
        driver.Engine.LoadAdapter("lora", _lora);
        return driver;
    }

    private static GenerationRequest Request(int[] ids, string? adapter = null, int max = 3) => new() { PromptIds = ids, AdapterName = adapter, MaxTokens = max, IgnoreEos = true };

    /// <summary>Runs one request to the end; returns its outcome and how many prompt tokens the cache served.</summary>
    private static (Outcome Outcome, int Cached) Run(EngineDriver driver, GenerationRequest request)
    {
        long id = driver.Submit(request);
        driver.RunToCompletion();
        var outcome = driver[id];
        Assert.Null(outcome.Error);
        return (outcome, outcome.Final!.Stats!.ReusedPromptTokens);
    }

    /// <summary>The same request on a fresh engine without a prefix cache: the reference every cached answer must equal.</summary>
    private Outcome Fresh(GenerationRequest request)
    {
        var driver = NewDriver(prefixCaching: false);
        using var engine = driver.Engine;
        return Run(driver, request).Outcome;
    }

    private void AssertSameAsFresh(Outcome served, GenerationRequest request)
    {
        var fresh = Fresh(request);
        Assert.Equal(fresh.Tokens, served.Tokens);
        Assert.Equal(fresh.Logits.Count, served.Logits.Count);
        for (int i = 0; i < fresh.Logits.Count; i++) Assert.True(fresh.Logits[i].AsSpan().SequenceEqual(served.Logits[i]), $"logits of token {i} differ from a recompute");
    }

    private static int[] Conversation(int seed, int length) => EngineTestKit.RandomIds(new Random(seed), length);

    [Theory]
    [InlineData(44)]   // the invocation starts a block: all 11 blocks before it are reused
    [InlineData(42)]   // mid-block: the 10 whole blocks before it are reused
    public void AnAloraAfterABaseConversationReusesEveryBlockBeforeItsInvocationsBlock(int conversationLength)
    {
        var driver = NewDriver();
        using var engine = driver.Engine;
        int[] conversation = Conversation(1, conversationLength);
        Assert.Equal(0, Run(driver, Request(conversation)).Cached);

        var intrinsic = Request([.. conversation, .. Invocation, 300, 301], "alora-a");
        var (outcome, cached) = Run(driver, intrinsic);
        Assert.Equal(conversationLength / Block * Block, cached);
        AssertSameAsFresh(outcome, intrinsic);
        var metrics = engine.Metrics();
        Assert.Equal(conversationLength + conversation.Length + 5, metrics.PrefixCacheQueryTokens);
        Assert.Equal(cached, metrics.PrefixCacheHitTokens);
    }

    [Fact]
    public void ABaseRequestAfterAnAloraReusesOnlyTheBlocksBeforeTheInvocation()
    {
        var driver = NewDriver();
        using var engine = driver.Engine;
        int[] conversation = Conversation(2, 40);
        int[] ids = [.. conversation, .. Invocation, .. Conversation(3, 13)[1..]];   // s = 40, 55 tokens
        Assert.Equal(0, Run(driver, Request(ids, "alora-a")).Cached);
        // 55 prompt + 2 generated positions computed: 14 full blocks, 10 base blocks and 4 of the aLoRA's.
        Assert.Equal(14, engine.Blocks.RegisteredBlockCount);

        var baseRequest = Request(ids);
        var (outcome, cached) = Run(driver, baseRequest);
        Assert.Equal(40, cached);
        AssertSameAsFresh(outcome, baseRequest);
    }

    [Fact]
    public void TwoAlorasOnOneConversationShareOnlyBaseBlocks()
    {
        var driver = NewDriver();
        using var engine = driver.Engine;
        int[] conversation = Conversation(4, 36);
        int[] ids = [.. conversation, .. Invocation, .. Conversation(5, 16)[1..]];   // s = 36, 54 tokens
        Assert.Equal(0, Run(driver, Request(ids, "alora-a")).Cached);

        var other = Request(ids, "alora-b");
        var (outcome, cached) = Run(driver, other);
        Assert.Equal(36, cached);                                     // not one of alora-a's blocks
        AssertSameAsFresh(outcome, other);

        var again = Request(ids, "alora-a");                          // the same adapter reuses its own blocks too
        var (againOutcome, againCached) = Run(driver, again);
        Assert.Equal(52, againCached);
        AssertSameAsFresh(againOutcome, again);
    }

    [Fact]
    public void AnAloraWhoseActivationStartsLaterInTheSameBlockDoesNotReuseTheEarlierOnesBlock()
    {
        var driver = NewDriver();
        using var engine = driver.Engine;
        // Both prompts share tokens [0, 48). In the first the last invocation starts at 41; the second repeats
        // the invocation at 45, so there the adapter takes over 4 positions later, inside the same block 10.
        int[] head = [.. Conversation(6, 41), .. Invocation, 300];   // 45 tokens
        int[] first = [.. head, .. Invocation, 301, 302, 303, 304, 305];
        int[] second = [.. head, .. Invocation, 301, 302, 303, 304, 305];
        first[45] = 200;   // breaks the second occurrence in the first prompt: its last invocation is the one at 41
        Assert.Equal(41, AdapterActivation.FindStart(first, _aloraA));
        Assert.Equal(45, AdapterActivation.FindStart(second, _aloraA));
        first = [.. first[..45], 13, 473, 9, 9, 9];
        Run(driver, Request(first, "alora-a"));

        var request = Request(second, "alora-a");
        var (outcome, cached) = Run(driver, request);
        Assert.Equal(40, cached);   // blocks 0..9 are base; block 10 was adapted from slot 1 there, from slot 5 here
        AssertSameAsFresh(outcome, request);
    }

    [Fact]
    public void ALoraSharesNothingWithTheBaseModel()
    {
        var driver = NewDriver();
        using var engine = driver.Engine;
        int[] ids = Conversation(7, 30);
        Run(driver, Request(ids));
        var lora = Request(ids, "lora");
        var (outcome, cached) = Run(driver, lora);
        Assert.Equal(0, cached);
        AssertSameAsFresh(outcome, lora);
        Assert.Equal(28, Run(driver, Request(ids, "lora")).Cached);   // its own blocks, yes
        Assert.Equal(28, Run(driver, Request(ids)).Cached);           // and the base model's still there
    }

    [Fact]
    public void FreedBlocksAreEvictedLeastRecentlyUsedFirst()
    {
        // 12 blocks. A request of 9 prompt tokens and 1 generated token computes 9 positions: 2 full blocks
        // (cached when freed, at the back of the queue) and 1 partial one (nothing findable: to the front).
        var driver = NewDriver(cacheTokens: 12 * Block);
        using var engine = driver.Engine;
        int[] a = Conversation(10, 9), b = Conversation(11, 9), c = Conversation(12, 9);
        Run(driver, Request(a, max: 1));
        Run(driver, Request(b, max: 1));
        Run(driver, Request(c, max: 1));
        Assert.Equal(6, engine.Blocks.CachedFreeBlockCount);
        Assert.Equal(8, Run(driver, Request(a, max: 1)).Cached);   // a used again: its blocks go to the back
        // d takes 5 blocks: the never-filled ones go first, nothing cached is evicted.
        Run(driver, Request(Conversation(13, 17), max: 1));
        Assert.Equal(0, engine.Blocks.Evictions);
        // e takes 4: the last 2 empty ones, then the least recently used cached blocks, b's.
        Run(driver, Request(Conversation(14, 13), max: 1));
        Assert.Equal(2, engine.Blocks.Evictions);
        Assert.Equal(8, Run(driver, Request(c, max: 1)).Cached);
        Assert.Equal(8, Run(driver, Request(a, max: 1)).Cached);
        Assert.Equal(0, Run(driver, Request(b, max: 1)).Cached);
    }

    [Fact]
    public void AForcedHashCollisionNeverServesWrongKeysAndValues()
    {
        var driver = NewDriver();
        using var engine = driver.Engine;
        engine.Blocks.HashOverride = (_, _, _) => 42;   // every block hashes alike
        int[] first = Conversation(20, 20), second = Conversation(21, 20);
        Run(driver, Request(first));
        var other = Request(second);
        var (outcome, cached) = Run(driver, other);
        Assert.Equal(0, cached);
        AssertSameAsFresh(outcome, other);
        // The same prompt again: its first block is the one the hash finds; the second collides with it and misses.
        var same = Request(first);
        var (sameOutcome, sameCached) = Run(driver, same);
        Assert.Equal(Block, sameCached);
        AssertSameAsFresh(sameOutcome, same);
    }

    [Fact]
    public async Task UnloadingAnAdapterEvictsItsBlocksAndItsIdIsNeverReused()
    {
        var driver = NewDriver();
        using var engine = driver.Engine;
        int[] ids = [.. Conversation(30, 20), .. Invocation, .. Conversation(31, 9)[1..]];   // s = 20, 31 tokens
        long firstId = engine.AdapterId("alora-a");
        Run(driver, Request(ids, "alora-a"));
        Assert.Equal(8, engine.Blocks.RegisteredBlockCount);   // 33 positions computed: 5 base blocks + 3 adapted

        var unloaded = engine.UnloadAdapterAsync("alora-a");
        driver.Step();
        await unloaded;
        Assert.Equal(5, engine.Blocks.RegisteredBlockCount);
        Assert.Throws<KeyNotFoundException>(() => engine.Submit(Request(ids, "alora-a")));

        long secondId = engine.LoadAdapter("alora-a", _aloraA);   // the same weights under the same name
        Assert.True(secondId > firstId);
        Assert.Equal(20, Run(driver, Request(ids, "alora-a")).Cached);
    }
}
