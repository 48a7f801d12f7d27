using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;
using Alora.Inference;

namespace Alora.Cli;

/// <summary>
/// `alora chat`: an interactive chat on the model's chat template, streaming replies as they are generated.
/// `/use NAME` switches the adapter for the next turns on the same conversation (`/use base` goes back), so a
/// user sees an aLoRA reuse the base model's cache: each reply ends with its cached-token count and TTFT.
/// </summary>
internal static class ChatCommands
{
    public static Command Chat()
    {
        var model = new Option<string>("--model", "-m") { Description = "Hugging Face model folder, .gguf file or Hub id", Required = true };
        var adapters = new Option<string[]>("--adapter") { Description = "Load an adapter (PEFT folder or llama.cpp GGUF LoRA file) as NAME=PATH (repeatable); /use NAME switches to it" };
        var system = new Option<string?>("--system") { Description = "A system message that starts the conversation" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Chat template file (.jinja, or JSON with chat_template) instead of the model's" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Most tokens per reply", DefaultValueFactory = _ => 256 };
        var sampling = new SamplingFlags();
        var command = new Command("chat", "Chat with the model in the terminal; /use NAME switches adapters, /use base goes back, /reset, /quit");
        foreach (var o in new Option[] { model, adapters, system, chatTemplate, maxTokens }.Concat(sampling.All)) command.Options.Add(o);
        command.SetAction(async (parse, cancellationToken) =>
        {
            using var languageModel = LanguageModel.Load(parse.GetValue(model)!);
            AdapterFlags.LoadInto(languageModel, parse.GetValue(adapters));
            ChatPrompter prompter;
            try { prompter = new ChatPrompter(languageModel, parse.GetValue(chatTemplate)); }
            catch (InvalidOperationException e) { throw new CliException(e.Message); }
            if (!prompter.HasTemplate) throw new CliException($"{languageModel.Path} has no chat template; give one with --chat-template FILE");
            var session = new ChatSession(languageModel, prompter, parse.GetValue(system), sampling.Read(parse), parse.GetValue(maxTokens));
            return await session.RunAsync(Console.In, Console.Out, cancellationToken).ConfigureAwait(false);
        });
        return command;
    }

    private sealed class ChatSession(LanguageModel model, ChatPrompter prompter, string? system, SamplingOptions sampling, int maxTokens)
    {
        private readonly JsonArray _conversation = system is null ? [] : [new JsonObject { ["role"] = "system", ["content"] = system }];
        private string? _adapter;

        public async Task<int> RunAsync(TextReader input, TextWriter output, CancellationToken cancellationToken)
        {
            output.WriteLine($"alora chat: {model.Path}; adapters: {(model.Adapters.Count == 0 ? "none" : string.Join(", ", model.Adapters.Keys))}. /use NAME, /use base, /reset, /quit");
            while (!cancellationToken.IsCancellationRequested)
            {
                output.Write($"{_adapter ?? "base"}> ");
                output.Flush();
                string? line = await input.ReadLineAsync(cancellationToken).ConfigureAwait(false);
                if (line is null || line.Trim() is "/quit" or "/exit") break;
                line = line.Trim();
                if (line.Length == 0) continue;
                if (line.StartsWith('/')) { Command(line, output); continue; }
                await ReplyAsync(line, output, cancellationToken).ConfigureAwait(false);
            }
            return 0;
        }

        private void Command(string line, TextWriter output)
        {
            string[] parts = line.Split(' ', 2, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            switch (parts[0])
            {
                case "/use" when parts.Length == 2 && parts[1] == "base":
                    _adapter = null;
                    output.WriteLine("using the base model");
                    break;
                case "/use" when parts.Length == 2 && model.Adapters.TryGetValue(parts[1], out var adapter):
                    _adapter = parts[1];
                    output.WriteLine($"using {adapter}");
                    break;
                case "/use":
                    output.WriteLine($"/use NAME: one of base, {string.Join(", ", model.Adapters.Keys)}");
                    break;
                case "/reset":
                    while (_conversation.Count > (system is null ? 0 : 1)) _conversation.RemoveAt(_conversation.Count - 1);
                    output.WriteLine("conversation cleared");
                    break;
                default:
                    output.WriteLine($"unknown command {parts[0]}: /use NAME, /use base, /reset, /quit");
                    break;
            }
        }

        private async Task ReplyAsync(string text, TextWriter output, CancellationToken cancellationToken)
        {
            _conversation.Add(new JsonObject { ["role"] = "user", ["content"] = text });
            int[] ids = prompter.RenderTurn(_conversation, _adapter);
            var reply = new StringBuilder();
            GenerationStats? stats = null;
            var request = new GenerationRequest { PromptIds = ids, AdapterName = _adapter, Sampling = sampling, MaxTokens = maxTokens };
            await foreach (var update in model.GenerateAsync(request, cancellationToken).ConfigureAwait(false))
            {
                output.Write(update.Text);
                output.Flush();
                reply.Append(update.Text);
                stats ??= update.Stats;
            }
            _conversation.Add(new JsonObject { ["role"] = "assistant", ["content"] = reply.ToString() });
            output.WriteLine();
            output.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"[{_adapter ?? "base"}: {stats!.PromptTokens} prompt tokens, {stats.ReusedPromptTokens} cached, TTFT {stats.TimeToFirstTokenSeconds * 1e3:F1} ms, {stats.GeneratedTokens} tokens]"));
        }
    }
}
