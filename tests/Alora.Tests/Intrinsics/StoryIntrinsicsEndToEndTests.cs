using System.ClientModel;
using System.CommandLine;
using System.Text.Json.Nodes;
using Alora.Intrinsics;
using Alora.Serving;
using Alora.Tests.Cli;
using OpenAI;
using OpenAI.Chat;
using StoryIntrinsics;

namespace Alora.Tests.Intrinsics;

/// <summary>
/// The stories260K intrinsics example, short: JSONL from the model's own stories, an answerability-style aLoRA
/// trained with `alora train`, served with `alora serve --intrinsic` and called with the OpenAI SDK, then called
/// through the pipeline. Few stories and steps: this checks the path, not the adapter's accuracy.
/// </summary>
[Collection("Console")]
public sealed class StoryIntrinsicsEndToEndTests
{
    private const int BlockSize = 16;

    private static string SampleFile(params string[] parts) => Path.Combine([SharedPaths.RepositoryRoot, "samples", "StoryIntrinsics", .. parts]);

    [Fact]
    public async Task TrainServeAndCallAnAnswerabilityIntrinsic()
    {
        using var folder = new TempFolder();
        string model = SharedPaths.Stories260K;
        string data = folder.File("data");
        using (var languageModel = LanguageModel.Load(model, cacheTokens: 1024))
            Assert.True(await StoryData.WriteAsync(languageModel, data, stories: 24, storyTokens: 40) >= 10);

        string adapter = folder.File("answerability");
        var (code, output) = CliRunner.Run("TrainCommands", "Train",
            "--base_model", model, "--data_path", Path.Combine(data, "answerability.jsonl"), "--output_dir", adapter,
            "--adapter", "alora", "--invocation_tokens", "13,473,467", "--lora_r", "8", "--lora_alpha", "16",
            "--lora_target_modules", "q_proj,k_proj,v_proj,o_proj", "--batch_size", "8", "--max_steps", "12",
            "--learning_rate", "5e-3", "--cutoff_len", "256", "--lora_dropout", "0", "--save_step", "1000", "--eval_step", "1000");
        Assert.True(code == 0, output);
        File.Copy(SampleFile("intrinsics", "answerability", "io.yaml"), Path.Combine(adapter, "io.yaml"));

        // alora serve --intrinsic, on a port it picks; the first line names the address.
        var serve = ServeCommand();
        var text = new StringWriter();
        var log = TextWriter.Synchronized(text);
        var oldOut = Console.Out;
        Console.SetOut(log);
        using var stop = new CancellationTokenSource();
        Task<int> serving = serve.Parse([
            "--model", model, "--served-model-name", "stories", "--intrinsic", $"answerability={adapter}", "--chat-template", SampleFile("template.jinja"),
            "--port", "0", "--kv-cache-tokens", "2048", "--quiet",
        ]).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false }, stop.Token);
        try
        {
            Uri baseAddress = await ListeningAddressAsync(log, text, serving);
            var options = new OpenAIClientOptions { Endpoint = new Uri(baseAddress, "v1") };
            var credential = new ApiKeyCredential("unused");

            var story = (await new ChatClient("stories", credential, options).CompleteChatAsync(
                [new UserChatMessage("Once upon a time")], new ChatCompletionOptions { Temperature = 0, MaxOutputTokenCount = 40 })).Value;
            Assert.Equal(OpenAI.Chat.ChatFinishReason.Length, story.FinishReason);
            // The base turn computed its prompt and 39 of its 40 tokens (the last is never fed back).
            int conversationBlocks = (story.Usage.InputTokenCount + 40 - 1) / BlockSize * BlockSize;

            var intrinsicOptions = new ChatCompletionOptions();
#pragma warning disable SCME0001 // JsonPatch: the SDK's way to send fields it does not model (vLLM's extra_body)
            intrinsicOptions.Patch.Set("$.intrinsic_kwargs"u8, BinaryData.FromObjectAsJson(new { noun = "girl" }));
#pragma warning restore SCME0001
            ChatCompletion answer;
            try
            {
                answer = (await new ChatClient("answerability", credential, options).CompleteChatAsync(
                    [new UserChatMessage("Once upon a time"), new AssistantChatMessage(story.Content[0].Text)], intrinsicOptions)).Value;
            }
            catch (ClientResultException e) { throw new InvalidOperationException(e.GetRawResponse()?.Content.ToString(), e); }
            var result = JsonNode.Parse(answer.Content[0].Text)!.AsObject();
            double likelihood = PythonJson.ToDouble(result["answerability_likelihood"]);
            Assert.InRange(likelihood, 0, 1);
            Assert.Equal(5, answer.Usage.OutputTokenCount);   // io.yaml's max_completion_tokens
            Assert.Equal(conversationBlocks, answer.Usage.InputTokenDetails.CachedTokenCount);
        }
        finally
        {
            stop.Cancel();
            try { await serving; } catch (OperationCanceledException) { }
            Console.SetOut(oldOut);
        }

        // The same intrinsic through the pipeline, on the library's engine.
        using var pipelineModel = LanguageModel.Load(model, engineOptions: new EngineOptions { KvCacheTokens = 2048, BlockSize = BlockSize });
        pipelineModel.LoadAdapter("answerability", adapter);
        var pipeline = new IntrinsicPipeline(pipelineModel, new ChatPrompter(pipelineModel, SampleFile("template.jinja")),
            new Dictionary<string, IntrinsicDefinition> { ["answerability"] = IntrinsicDefinition.Load(Path.Combine(adapter, "io.yaml")) },
            new PipelineOptions { MaxTokens = 40 });
        var turn = await pipeline.AskAsync("Once upon a time");
        var check = await pipeline.CallAsync("answerability", new Dictionary<string, string> { ["noun"] = "girl" });
        Assert.InRange(PythonJson.ToDouble(check.Result!["answerability_likelihood"]), 0, 1);
        Assert.Equal((turn.PromptTokens + turn.GeneratedTokens - 1) / BlockSize * BlockSize, check.CachedTokens);
    }

    private static Command ServeCommand()
    {
        var type = Type.GetType("Alora.Cli.ServeCommands, Alora.Cli", throwOnError: true)!;
        return (Command)type.GetMethod("Serve", System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Static)!.Invoke(null, null)!;
    }

    private static async Task<Uri> ListeningAddressAsync(TextWriter log, StringWriter written, Task serving)
    {
        for (int i = 0; i < 600; i++)
        {
            string text;
            lock (log) text = written.ToString();   // the synchronized writer locks itself
            int at = text.IndexOf("listening on ", StringComparison.Ordinal);
            if (at >= 0)
            {
                string rest = text[(at + "listening on ".Length)..];
                return new Uri(rest[..rest.IndexOf(' ', StringComparison.Ordinal)]);
            }
            if (serving.IsCompleted) await serving;   // surfaces its error
            await Task.Delay(50);
        }
        string seen;
        lock (log) seen = written.ToString();
        throw new TimeoutException($"alora serve did not report its address within 30 s; it wrote: {seen}");
    }
}
