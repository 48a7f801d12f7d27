using Alora.Tokenization;
using Alora.Tokenization.Templates;
using Alora.Training.Data;

namespace Alora.Tests.Training;

public sealed class TrainingDataTests
{
    private static readonly string Granite = SharedPaths.Path("tokenizers", "granite3");

    [Fact]
    public void IbmIntrinsicDataLocatesTheInvocationAndLabelsTheAnswer()
    {
        var tokenizer = Tokenizer.Load(Granite);
        var chat = ChatTemplateConfig.Load(Granite);
        int[] invocation = InvocationTokens.Encode(tokenizer, "<|start_of_role|>certainty<|end_of_role|>");
        var examples = TrainingDataLoader.Load(SharedPaths.Path("data", "activated-lora", "example_data.jsonl"), tokenizer, chat,
            new TrainingDataOptions { InvocationTokens = invocation, CutoffLength = 4096 });
        Assert.Equal(8, examples.Count);
        foreach (var e in examples)
        {
            int s = e.ActivationStart!.Value;
            Assert.Equal(invocation, e.InputIds[s..(s + invocation.Length)]);
            Assert.All(e.Labels[..(s + invocation.Length)], l => Assert.Equal(TrainingExample.IgnoreIndex, l));
            string answer = tokenizer.Decode(e.Labels.AsSpan(s + invocation.Length));
            Assert.Matches(@"^[0-9]<\|end_of_text\|>\n?$", answer);   // the certainty digit and the end of the turn
        }
    }

    [Fact]
    public void InputOutputPairsLearnTheOutputAndEos()
    {
        using var temp = new TempFolder();
        var tokenizer = Tokenizer.Load(SharedPaths.Stories260K);
        var examples = TrainingDataLoader.Load(SharedPaths.Path("data", "fms-hf-tuning", "twitter_complaints_input_output.jsonl"), tokenizer, null, new TrainingDataOptions());
        Assert.Equal(50, examples.Count);
        var first = examples[0];
        int prompt = tokenizer.Encode("@HMRCcustomers No this is my first job").Length;
        Assert.All(first.Labels[..prompt], l => Assert.Equal(-100, l));
        Assert.Equal([.. tokenizer.Encode("no complaint", addSpecialTokens: false), tokenizer.EosTokenId!.Value], first.Labels[prompt..]);
        Assert.Equal(1, first.InputIds[0]);   // BOS
    }

    [Fact]
    public void PreTokenizedLinesAndTruncation()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("d.jsonl"), """
            {"input_ids": [1, 5, 6, 7, 8], "labels": [-100, -100, 6, 7, 8]}
            {"input_ids": [1, 9, 10]}
            """);
        var tokenizer = Tokenizer.Load(SharedPaths.Stories260K);
        var examples = TrainingDataLoader.Load(temp.File("d.jsonl"), tokenizer, null, new TrainingDataOptions { CutoffLength = 4 });
        Assert.Equal([1, 5, 6, 7], examples[0].InputIds);
        Assert.Equal([-100, -100, 6, 7], examples[0].Labels);
        Assert.Equal([1, 9, 10], examples[1].Labels);

        // A cutoff that leaves an example nothing to learn drops it (and says so); if none is left, an error.
        File.WriteAllText(temp.File("e.jsonl"), "{\"input_ids\": [1, 5, 6], \"labels\": [-100, -100, 6]}\n{\"input_ids\": [1, 7, 8]}\n");
        var skipped = new List<string>();
        examples = TrainingDataLoader.Load(temp.File("e.jsonl"), tokenizer, null, new TrainingDataOptions { CutoffLength = 2 }, skipped);
        Assert.Single(examples);
        Assert.Contains("e.jsonl:1: nothing left to learn", Assert.Single(skipped));
        File.WriteAllText(temp.File("f.jsonl"), "{\"input_ids\": [1, 5, 6], \"labels\": [-100, -100, 6]}\n");
        var e = Assert.Throws<TrainingDataException>(() => TrainingDataLoader.Load(temp.File("f.jsonl"), tokenizer, null, new TrainingDataOptions { CutoffLength = 2 }, []));
        Assert.Contains("raise CutoffLength", e.Message);
    }

    [Theory]
    [InlineData("{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\"\n", "d.jsonl:2: not valid JSON")]
    [InlineData("{\"text\": \"hello\"}\n", "d.jsonl:1: unrecognized example with keys [text]")]
    [InlineData("{\"input_ids\": [1, 2], \"labels\": [1]}\n", "\"labels\" has 1 entries")]
    [InlineData("{\"input_ids\": [1, 99999]}\n", "\"input_ids\"[1] = 99999 is outside the vocabulary")]
    [InlineData("\n\n", "the data set is empty")]
    public void BadDataIsNamedWithItsLine(string content, string message)
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("d.jsonl"), content);
        var tokenizer = Tokenizer.Load(SharedPaths.Stories260K);
        var e = Assert.Throws<TrainingDataException>(() => TrainingDataLoader.Load(temp.File("d.jsonl"), tokenizer, null, new TrainingDataOptions()));
        Assert.Contains(message, e.Message);
    }

    [Fact]
    public void AnExampleWithoutTheInvocationIsNamed()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("d.jsonl"), "{\"prompt\": \"Tom ran.\\nQ: Did Tom run?\\nA:\", \"completion\": \" yes\"}\n{\"prompt\": \"Tom ran.\", \"completion\": \" yes\"}\n");
        var tokenizer = Tokenizer.Load(SharedPaths.Stories260K);
        var options = new TrainingDataOptions { InvocationTokens = [13, 473, 467] };
        var e = Assert.Throws<TrainingDataException>(() => TrainingDataLoader.Load(temp.File("d.jsonl"), tokenizer, null, options));
        Assert.Contains("d.jsonl:2: the invocation [13, 473, 467] does not occur", e.Message);
    }

    /// <summary>A legacy IBM aLoRA activates one token after its invocation's start; its training examples must too.</summary>
    [Fact]
    public void TheActivationStartTakesTheAdaptersShift()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("d.jsonl"), "{\"prompt\": \"Tom ran.\\nQ: Did Tom run?\\nA:\", \"completion\": \" yes\"}\n");
        var tokenizer = Tokenizer.Load(SharedPaths.Stories260K);
        int[] invocation = [13, 473, 467];
        var current = TrainingDataLoader.Load(temp.File("d.jsonl"), tokenizer, null, new TrainingDataOptions { InvocationTokens = invocation })[0];
        var legacy = TrainingDataLoader.Load(temp.File("d.jsonl"), tokenizer, null, new TrainingDataOptions { InvocationTokens = invocation, ActivationShift = 1 })[0];
        int s = Alora.Inference.AdapterActivation.LastOccurrence(current.InputIds, invocation);
        Assert.Equal(s, current.ActivationStart);
        Assert.Equal(s + 1, legacy.ActivationStart);
        Assert.Equal(current.Labels, legacy.Labels);   // the loss is on the same tokens
    }

    [Fact]
    public void SplitAndBatchesAreSeededAndPadded()
    {
        var examples = Enumerable.Range(0, 10).Select(i => new TrainingExample(Enumerable.Range(1, i + 2).ToArray(), Enumerable.Range(1, i + 2).ToArray(), null, i + 1)).ToList();
        var (train, validation) = TrainingBatches.Split(examples, 0.2, seed: 42);
        Assert.Equal(2, validation.Count);
        Assert.Equal(8, train.Count);
        Assert.Empty(train.Intersect(validation));
        Assert.Equal(validation, TrainingBatches.Split(examples, 2, seed: 42).Validation);
        var batches = TrainingBatches.Epoch(train, 3, seed: 1, epoch: 0).ToList();
        Assert.Equal([3, 3, 2], batches.Select(b => b.Rows));
        foreach (var b in batches)
            for (int r = 0; r < b.Rows; r++)
                Assert.All(b.Labels[r][b.Lengths[r]..], l => Assert.Equal(-100, l));
        Assert.Equal(batches.Select(b => b.Lengths), TrainingBatches.Epoch(train, 3, seed: 1, epoch: 0).Select(b => b.Lengths));
        Assert.NotEqual(batches.SelectMany(b => b.Lengths), TrainingBatches.Epoch(train, 3, seed: 1, epoch: 1).SelectMany(b => b.Lengths));
        Assert.Throws<TrainingDataException>(() => TrainingBatches.Split(examples, 10, seed: 1));
    }
}
