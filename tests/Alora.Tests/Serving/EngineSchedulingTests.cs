using Alora.Inference;
using Alora.Models;
using Alora.Serving;
using Alora.Tests.Models;

namespace Alora.Tests.Serving;

/// <summary>
/// Continuous batching is invisible in the results: a request's tokens and logits are bit-identical alone and
/// scheduled among others (random mixes of base, LoRA and aLoRA requests arriving at random steps, chunked
/// prefill, preemption forced by a tiny pool). Batch invariance (docs/ARCHITECTURE.md) makes exact equality
/// the right assertion.
/// </summary>
public sealed class EngineSchedulingTests : IClassFixture<BatchingTests.Stories>, IDisposable
{
    private readonly EngineTestKit _kit;
    public EngineSchedulingTests(BatchingTests.Stories stories) => _kit = new EngineTestKit(stories.Weights);
    public void Dispose() => _kit.Dispose();

    private sealed record Plan(GenerationRequest Request, int ArrivalStep);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RequestsAreBitIdenticalAloneAndScheduledAmongOthers(int seed)
    {
        var random = new Random(seed);
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        int[] invocationA = [13, 473, 467], invocationB = [410, 300];
        var adapters = new Dictionary<string, ForwardAdapter>
        {
            ["lora"] = _kit.RandomAdapter(random, "lora", null),
            ["alora-a"] = _kit.RandomAdapter(random, "alora-a", invocationA),
            ["alora-b"] = _kit.RandomAdapter(random, "alora-b", invocationB),
        };
        string?[] choices = [null, "lora", "alora-a", "alora-b"];
        var plans = new List<Plan>();
        for (int i = 0; i < 12; i++)
        {
            string? adapter = choices[random.Next(choices.Length)];
            var ids = EngineTestKit.RandomIds(random, random.Next(4, 60)).ToList();
            if (adapter is "alora-a" or "alora-b")
            {
                int[] invocation = adapter == "alora-a" ? invocationA : invocationB;
                ids.InsertRange(random.Next(1, ids.Count + 1), invocation);
                ids.AddRange(EngineTestKit.RandomIds(random, random.Next(1, 6))[1..]);
            }
            var sampling = random.Next(2) == 0 ? SamplingOptions.Greedy
                : new SamplingOptions { Temperature = 0.9f, TopK = 20, TopP = 0.9f, MinP = 0.02f, Seed = (ulong)random.Next() };
            plans.Add(new Plan(new GenerationRequest
            {
                PromptIds = [.. ids],
                MaxTokens = random.Next(1, 16),
                Sampling = sampling,
                AdapterName = adapter,
                IgnoreEos = random.Next(2) == 0,
            }, random.Next(0, 30)));
        }

        // Alone: one engine per request, a roomy pool, no prefix cache, whole prompts in one step.
        var alone = new List<Outcome>();
        foreach (var plan in plans)
        {
            var driver = new EngineDriver(model, new EngineOptions { KvCacheTokens = 1024, BlockSize = 4, PrefixCaching = false, MaxTokensPerStep = 512 });
            using var engine = driver.Engine;
            foreach (var (name, adapter) in adapters) engine.LoadAdapter(name, adapter);
            long id = driver.Submit(plan.Request);
            driver.RunToCompletion();
            Assert.Equal(1, engine.Metrics().Steps > 0 ? 1 : 0);
            alone.Add(driver[id]);
        }

        // Together: a pool of 30 blocks of 4 tokens (the longest request needs ~20), 24 tokens a step, 6 running.
        var together = new EngineDriver(model, new EngineOptions
        {
            KvCacheTokens = 120, BlockSize = 4, MaxTokensPerStep = 24, MaxRunningRequests = 6,
            LongPrefillThreshold = seed % 2 == 0 ? 7 : 0, ShortPrefillTokens = seed > 2 ? 6 : 0,
        });
        using (var engine = together.Engine)
        {
            foreach (var (name, adapter) in adapters) engine.LoadAdapter(name, adapter);
            var ids = new long[plans.Count];
            for (int step = 0; step < 10_000 && (step <= 30 || engine.HasWork); step++)
            {
                for (int i = 0; i < plans.Count; i++)
                    if (plans[i].ArrivalStep == step) ids[i] = together.Submit(plans[i].Request);
                together.Step();
            }
            Assert.False(engine.HasWork);
            var metrics = engine.Metrics();
            Assert.True(metrics.Preemptions > 0, "the tiny pool should force preemptions");
            Assert.Equal(0, metrics.BlocksUsed);
            Assert.Equal(engine.Blocks.BlockCount, engine.Blocks.FreeBlockCount);

            for (int i = 0; i < plans.Count; i++)
            {
                var (a, t) = (alone[i], together[ids[i]]);
                Assert.Null(a.Error);
                Assert.Null(t.Error);
                Assert.Equal(a.Tokens, t.Tokens);
                Assert.Equal(a.Final!.Finish, t.Final!.Finish);
                Assert.Equal(a.Logits.Count, t.Logits.Count);
                for (int k = 0; k < a.Logits.Count; k++)
                    Assert.True(a.Logits[k].AsSpan().SequenceEqual(t.Logits[k]), $"request {i} ({plans[i].Request.AdapterName ?? "base"}): logits of token {k} differ");
            }
        }
    }

    [Fact]
    public void StepsScheduleRunningRequestsFirstThenPromptChunksUnderTheTokenBudget()
    {
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        var driver = new EngineDriver(model, new EngineOptions { KvCacheTokens = 256, BlockSize = 4, MaxTokensPerStep = 8, MaxRunningRequests = 2 });
        using var engine = driver.Engine;
        var random = new Random(5);
        GenerationRequest Make(int length, int max) => new() { PromptIds = EngineTestKit.RandomIds(random, length), MaxTokens = max, IgnoreEos = true };
        long a = driver.Submit(Make(10, 3)), b = driver.Submit(Make(3, 2)), c = driver.Submit(Make(5, 1));

        static ScheduledWork W(long id, int n, bool prefill) => new(id, n, prefill);
        Assert.Equal([W(a, 8, true)], driver.Step().Scheduled);                     // a's first chunk fills the budget
        Assert.Equal([W(a, 2, true), W(b, 3, true)], driver.Step().Scheduled);      // a's rest (samples), b whole; c waits (2 running)
        Assert.Equal([W(a, 1, false), W(b, 1, false)], driver.Step().Scheduled);    // both decode; b finishes (2 tokens)
        Assert.Equal([b], engine.LastStep.Finished);
        Assert.Equal([W(a, 1, false), W(c, 5, true)], driver.Step().Scheduled);     // a's last token; c admitted in b's place
        Assert.Equal([a, c], engine.LastStep.Finished);
        Assert.False(engine.HasWork);
        Assert.Equal([3, 2, 1], new[] { a, b, c }.Select(id => driver[id].Tokens.Count));
    }

    [Fact]
    public void ALongPrefillThresholdLetsAShortPromptShareTheStepWithALongOne()
    {
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        var driver = new EngineDriver(model, new EngineOptions { KvCacheTokens = 256, BlockSize = 4, MaxTokensPerStep = 16, LongPrefillThreshold = 6 });
        using var engine = driver.Engine;
        var random = new Random(6);
        long a = driver.Submit(new GenerationRequest { PromptIds = EngineTestKit.RandomIds(random, 20), MaxTokens = 2, IgnoreEos = true });
        long b = driver.Submit(new GenerationRequest { PromptIds = EngineTestKit.RandomIds(random, 3), MaxTokens = 2, IgnoreEos = true });
        static ScheduledWork W(long id, int n, bool prefill) => new(id, n, prefill);
        Assert.Equal([W(a, 6, true), W(b, 3, true)], driver.Step().Scheduled);      // without the cap a would take 16 and b wait
        Assert.Equal([W(b, 1, false), W(a, 6, true)], driver.Step().Scheduled);     // decode rows first: b's first token came in step 1
        Assert.Equal([b], engine.LastStep.Finished);
        Assert.Equal([W(a, 6, true)], driver.Step().Scheduled);
        Assert.Equal([W(a, 2, true)], driver.Step().Scheduled);                     // a's last chunk samples its first token
    }

    [Fact]
    public void AShortPromptJumpsTheQueueAndKeepsItsStepShort()
    {
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        var random = new Random(8);
        int[] longPrompt = EngineTestKit.RandomIds(random, 40), shortPrompt = EngineTestKit.RandomIds(random, 3);
        static ScheduledWork W(long id, int n, bool prefill) => new(id, n, prefill);

        var driver = new EngineDriver(model, new EngineOptions { KvCacheTokens = 256, BlockSize = 4, MaxTokensPerStep = 16, ShortPrefillTokens = 4 });
        using (var engine = driver.Engine)
        {
            long a = driver.Submit(new GenerationRequest { PromptIds = longPrompt, MaxTokens = 2, IgnoreEos = true });
            Assert.Equal([W(a, 16, true)], driver.Step().Scheduled);
            long b = driver.Submit(new GenerationRequest { PromptIds = shortPrompt, MaxTokens = 2, IgnoreEos = true });
            Assert.Equal([W(b, 3, true), W(a, 4, true)], driver.Step().Scheduled);    // b whole (samples now), a held to 4
            Assert.Equal([W(b, 1, false), W(a, 15, true)], driver.Step().Scheduled);  // b's last token; a takes the rest of the budget
            Assert.Equal([b], engine.LastStep.Finished);
        }

        // Without it, b waits until a's prompt is done.
        var plain = new EngineDriver(model, new EngineOptions { KvCacheTokens = 256, BlockSize = 4, MaxTokensPerStep = 16 });
        using (var engine = plain.Engine)
        {
            long a = plain.Submit(new GenerationRequest { PromptIds = longPrompt, MaxTokens = 2, IgnoreEos = true });
            plain.Step();
            long b = plain.Submit(new GenerationRequest { PromptIds = shortPrompt, MaxTokens = 2, IgnoreEos = true });
            Assert.Equal([W(a, 16, true)], plain.Step().Scheduled);
            Assert.Equal([W(a, 8, true), W(b, 3, true)], plain.Step().Scheduled);
            plain.RunToCompletion();
            Assert.Equal(driverTokens(plain, b), driverTokens(driver, b));   // the order of work changes nothing in the results
        }

        static List<int> driverTokens(EngineDriver d, long id) => d[id].Tokens;
    }

    [Fact]
    public void PreemptionFreesTheNewestRequestAndRecomputesIt()
    {
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        // 6 blocks of 4 tokens; two requests of 8 prompt tokens each decoding 12 tokens cannot both fit.
        var driver = new EngineDriver(model, new EngineOptions { KvCacheTokens = 24, BlockSize = 4, MaxTokensPerStep = 64 });
        using var engine = driver.Engine;
        var random = new Random(9);
        long a = driver.Submit(new GenerationRequest { PromptIds = EngineTestKit.RandomIds(random, 8), MaxTokens = 12, IgnoreEos = true });
        long b = driver.Submit(new GenerationRequest { PromptIds = EngineTestKit.RandomIds(random, 8), MaxTokens = 12, IgnoreEos = true });
        var preempted = new List<long>();
        for (int i = 0; i < 200 && engine.HasWork; i++) preempted.AddRange(driver.Step().Preempted);
        Assert.Equal(b, preempted[0]);   // the newest goes first
        Assert.DoesNotContain(a, preempted);
        Assert.Equal(12, driver[a].Tokens.Count);
        Assert.Equal(12, driver[b].Tokens.Count);
        Assert.Equal(engine.Blocks.BlockCount, engine.Blocks.FreeBlockCount);
    }

    [Fact]
    public async Task CancellationAndClosedStreamsLeaveThePoolAsItWas()
    {
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        var driver = new EngineDriver(model, new EngineOptions { KvCacheTokens = 256, BlockSize = 4, MaxTokensPerStep = 16 });
        using var engine = driver.Engine;
        var random = new Random(3);
        using var cancel = new CancellationTokenSource();
        long a = driver.Submit(new GenerationRequest { PromptIds = EngineTestKit.RandomIds(random, 30), MaxTokens = 50, IgnoreEos = true }, cancel.Token);
        long b = driver.Submit(new GenerationRequest { PromptIds = EngineTestKit.RandomIds(random, 9), MaxTokens = 50, IgnoreEos = true });
        var closed = engine.Submit(new GenerationRequest { PromptIds = EngineTestKit.RandomIds(random, 12), MaxTokens = 50, IgnoreEos = true });
        for (int i = 0; i < 5; i++) driver.Step();
        Assert.True(engine.Blocks.UsedBlockCount > 0);

        cancel.Cancel();                                  // mid-decode
        var enumerator = closed.GetAsyncEnumerator();     // a consumer that reads one update and hangs up
        Assert.True(await enumerator.MoveNextAsync());
        await enumerator.DisposeAsync();
        driver.Step();
        Assert.IsAssignableFrom<OperationCanceledException>(driver[a].Error);
        Assert.True(engine.Metrics().RunningRequests == 1, "only b still runs");
        engine.Cancel(b);
        driver.Step();
        Assert.False(engine.HasWork);
        Assert.Equal(0, engine.Blocks.UsedBlockCount);
        Assert.Equal(engine.Blocks.BlockCount, engine.Blocks.FreeBlockCount);
        // Full blocks stay cached; partial ones hold nothing findable.
        Assert.True(engine.Blocks.CachedFreeBlockCount > 0);
    }

    [Fact]
    public void BadRequestsAreRefusedAtSubmission()
    {
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        using var engine = new Engine(model, [2], null, new EngineOptions { KvCacheTokens = 64, BlockSize = 4 }, startLoop: false);
        engine.LoadAdapter("qa", _kit.RandomAdapter(new Random(1), "qa", [13, 473]));
        Assert.Contains("no tokens", Assert.Throws<ArgumentException>(() => engine.Submit(new GenerationRequest { PromptIds = [] })).Message);
        Assert.Contains("vocabulary", Assert.Throws<ArgumentOutOfRangeException>(() => engine.Submit(new GenerationRequest { PromptIds = [1, 9999] })).Message);
        Assert.Contains("no adapter named 'nope'", Assert.Throws<KeyNotFoundException>(() => engine.Submit(new GenerationRequest { PromptIds = [1, 5], AdapterName = "nope" })).Message);
        var missing = Assert.Throws<InvocationNotFoundException>(() => engine.Submit(new GenerationRequest { PromptIds = [1, 5, 6], AdapterName = "qa" }));
        Assert.Contains("'qa'", missing.Message);
        Assert.Contains("holds 64", Assert.Throws<ArgumentException>(() => engine.Submit(new GenerationRequest { PromptIds = new int[64] })).Message);
        Assert.False(engine.HasWork);
    }

    [Fact]
    public async Task TheLoopThreadServesConcurrentSubmittersWithTheSameResultsAsAlone()
    {
        using var model = new DecoderModel(_kit.Weights, maxBatchTokens: 32);
        var random = new Random(11);
        var requests = Enumerable.Range(0, 8).Select(i => new GenerationRequest
        {
            PromptIds = EngineTestKit.RandomIds(random, random.Next(3, 40)),
            MaxTokens = random.Next(1, 20),
            IgnoreEos = true,
        }).ToArray();
        var expected = requests.Select(r =>
        {
            var driver = new EngineDriver(model, new EngineOptions { KvCacheTokens = 512, BlockSize = 4, PrefixCaching = false });
            using var e = driver.Engine;
            long id = driver.Submit(r);
            driver.RunToCompletion();
            return driver[id].Tokens;
        }).ToArray();

        using var engine = new Engine(model, [2], null, new EngineOptions { KvCacheTokens = 256, BlockSize = 4, MaxTokensPerStep = 16 });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var results = await Task.WhenAll(requests.Select(r => Task.Run(async () =>
        {
            var tokens = new List<int>();
            await foreach (var update in engine.GenerateAsync(r, timeout.Token)) if (update.TokenId >= 0) tokens.Add(update.TokenId);
            return tokens;
        })));
        for (int i = 0; i < requests.Length; i++) Assert.Equal(expected[i], results[i]);
        Assert.Equal(8, engine.Metrics().RequestsFinished);
    }
}
