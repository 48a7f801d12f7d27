using System.CommandLine;
using Alora.Server;
using Alora.Serving;

namespace Alora.Cli;

/// <summary>`alora serve`: the OpenAI-compatible server (vLLM's flag names).</summary>
internal static class ServeCommands
{
    public static Command Serve()
    {
        var model = new Option<string>("--model", "-m") { Description = "Hugging Face model folder, .gguf file or Hub id", Required = true };
        var adapters = new Option<string[]>("--adapter", "--lora-modules") { Description = "Load an adapter (PEFT folder or llama.cpp GGUF LoRA file) as NAME=PATH (repeatable); requests pick it with \"model\": NAME" };
        var servedName = new Option<string?>("--served-model-name") { Description = "The base model's name in the API (default: the --model argument)" };
        var host = new Option<string>("--host") { Description = "Address to listen on (loopback unless told otherwise)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Port (0: any free port)", DefaultValueFactory = _ => 8000 };
        var apiKey = new Option<string?>("--api-key") { Description = "Require \"Authorization: Bearer KEY\" on /v1 requests" };
        var chatTemplate = new Option<string?>("--chat-template") { Description = "Chat template file (.jinja, or JSON with chat_template) instead of the model's" };
        var maxNumSeqs = new Option<int>("--max-num-seqs") { Description = "Requests running at once", DefaultValueFactory = _ => 64 };
        var maxBatchedTokens = new Option<int>("--max-num-batched-tokens") { Description = "Tokens computed per engine step (decode rows and prompt chunks)", DefaultValueFactory = _ => 512 };
        var kvCacheTokens = new Option<int>("--kv-cache-tokens") { Description = "Tokens the KV cache holds, all requests and cached prefixes together", DefaultValueFactory = _ => 16384 };
        var longPrefill = new Option<int>("--long-prefill-token-threshold") { Description = "Most prompt tokens one request computes per step (0: no cap), so short prompts are not queued behind long ones", DefaultValueFactory = _ => 0 };
        var shortPrefill = new Option<int>("--short-prefill-tokens") { Description = "Waiting requests with at most this many uncached prompt tokens (aLoRA intrinsics) are admitted first (0: off)", DefaultValueFactory = _ => 0 };
        var noPrefixCaching = new Option<bool>("--no-enable-prefix-caching") { Description = "Do not reuse KV blocks across requests" };
        var runtimeLora = new Option<bool>("--allow-runtime-lora-updating") { Description = "Enable POST /v1/load_lora_adapter and /v1/unload_lora_adapter" };
        var quiet = new Option<bool>("--quiet") { Description = "Do not log a line per request" };

        var command = new Command("serve", "Serve the model and its adapters over an OpenAI-compatible HTTP API");
        foreach (var o in new Option[] { model, adapters, servedName, host, port, apiKey, chatTemplate, maxNumSeqs, maxBatchedTokens, kvCacheTokens, longPrefill, shortPrefill, noPrefixCaching, runtimeLora, quiet })
            command.Options.Add(o);
        command.SetAction(async (parse, cancellationToken) =>
        {
            string modelArgument = parse.GetValue(model)!;
            var engineOptions = new EngineOptions
            {
                MaxRunningRequests = parse.GetValue(maxNumSeqs),
                MaxTokensPerStep = parse.GetValue(maxBatchedTokens),
                KvCacheTokens = parse.GetValue(kvCacheTokens),
                PrefixCaching = !parse.GetValue(noPrefixCaching),
                LongPrefillThreshold = parse.GetValue(longPrefill),
                ShortPrefillTokens = parse.GetValue(shortPrefill),
            };
            using var languageModel = LanguageModel.Load(modelArgument, maxBatchTokens: Math.Min(512, engineOptions.MaxTokensPerStep), engineOptions: engineOptions);
            AdapterFlags.LoadInto(languageModel, parse.GetValue(adapters));
            var options = new ServerOptions
            {
                ServedModelName = parse.GetValue(servedName) ?? modelArgument,
                ApiKey = parse.GetValue(apiKey),
                ChatTemplatePath = parse.GetValue(chatTemplate),
                AllowRuntimeLoraUpdating = parse.GetValue(runtimeLora),
                RequestLog = parse.GetValue(quiet) ? null : Console.Out,
            };
            await using var server = AloraServer.Create(languageModel, options, parse.GetValue(host)!, parse.GetValue(port));
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
            // The first line names the address, so a script (or a test) that asked for port 0 can read it.
            Console.Out.WriteLine($"alora serve: listening on {server.BaseAddress} (model '{options.ServedModelName}', adapters: {(languageModel.Adapters.Count == 0 ? "none" : string.Join(", ", languageModel.Adapters.Keys))})");
            Console.Out.Flush();
            await server.WaitForShutdownAsync(cancellationToken).ConfigureAwait(false);
            Console.Out.WriteLine("alora serve: stopped");
            return 0;
        });
        return command;
    }
}
