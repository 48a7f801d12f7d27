using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Alora.Tests.Server;
using CsCheck;
using Xunit.Abstractions;

namespace Alora.Tests.Fuzz;

/// <summary>
/// The OpenAI-compatible server (in-process Kestrel on a loopback port, stories260K with the fixture adapters) under
/// hostile request bodies and clients that hang up mid-stream. Every mutant of a real request gets a 2xx or a 4xx
/// whose JSON error says what is wrong, never a 500 or no answer; after streams cut off at any point the engine
/// frees every KV block and still serves. Seeded, as the file harnesses are.
/// </summary>
public sealed class ServerFuzzTests(ServerFixture server, ITestOutputHelper output) : IClassFixture<ServerFixture>
{
    private static readonly (string Path, string Body)[] s_seeds =
    [
        ("/v1/chat/completions", """{"model":"stories","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Once upon a time"}],"max_tokens":4,"temperature":0}"""),
        ("/v1/chat/completions", """{"model":"qa","messages":[{"role":"user","content":"Lily had a dog."}],"max_tokens":3,"stream":true,"stream_options":{"include_usage":true},"chat_template_kwargs":{"ask":true},"add_generation_prompt":true}"""),
        ("/v1/chat/completions", """{"model":"story","messages":[{"role":"user","content":"Tom"},{"role":"assistant","content":"ran"}],"max_tokens":2,"n":2,"top_p":0.9,"top_k":5,"seed":7,"stop":["."],"logprobs":true,"top_logprobs":2}"""),
        ("/v1/completions", """{"model":"stories","prompt":"Once upon","max_tokens":4,"logprobs":2,"seed":3,"n":2,"echo":false,"stop":"\n"}"""),
        ("/v1/completions", """{"model":"stories","prompt":[1, 403, 407],"max_tokens":3,"stream":true,"return_token_ids":true,"repetition_penalty":1.1}"""),
        ("/v1/chat/completions", """{"model":"stories","messages":[{"role":"user","content":"Tom"}],"max_tokens":6,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"a":{"type":"integer","minimum":0},"b":{"type":"array","items":{"type":"string","maxLength":3},"maxItems":2},"c":{"enum":["x","y"]}},"required":["a"]}}}}"""),
        ("/v1/completions", """{"model":"stories","prompt":"Once","max_tokens":4,"structured_outputs":{"regex":"[a-c]{1,3}( [0-9]+)?"}}"""),
        ("/v1/completions", """{"model":"stories","prompt":"Once","max_tokens":4,"guided_choice":["yes","no"]}"""),
        ("/v1/completions", """{"model":"stories","prompt":"Once","max_tokens":4,"guided_grammar":"root ::= \"a\" [b-d]* | \"x\""}"""),
        ("/tokenize", """{"model":"stories","prompt":"Once upon a time","add_special_tokens":true}"""),
        ("/tokenize", """{"model":"stories","messages":[{"role":"user","content":"Hi"}],"add_generation_prompt":true}"""),
        ("/detokenize", """{"model":"stories","tokens":[1, 403, 407, 2]}"""),
    ];

    private static readonly string[] s_tokens =
    [
        "\"", "{", "}", "[", "]", ",", ":", "null", "true", "false", "-1", "0", "1e400", "9223372036854775807", "18446744073709551616",
        "\"\\ud800\"", "\"\\u0000\"", "\xFF", "\"model\"", "\"messages\"", "\"role\"", "\"content\"", "\"tool\"", "\"prompt\"", "\"max_tokens\"",
        "\"n\"", "\"stream\"", "\"logit_bias\"", "{\"1\": 100}", "\"lora_request\"", "\"stop\"", "[[[[[[[[", "\"qa\"", "\"story\"",
        "\"$ref\"", "\"#\"", "\"anyOf\"", "\"pattern\"", "\"(a+)+$\"", "{9999999}", "\"minItems\"", "\"maxLength\"", "::=", "*", "(((((((",
    ];

    [Fact]
    public async Task MutatedRequestBodiesGetAnAnswerNeverA500()
    {
        foreach (var (path, body) in s_seeds)
        {
            var (seedStatus, seedAnswer) = await server.PostAsync(path, JsonNode.Parse(body)!);
            Assert.True(seedStatus == 200, $"seed {path} {body}: {seedStatus} {seedAnswer}");
        }
        // Half byte-level mutations (mostly malformed JSON), half well-formed JSON with one or two values swapped for
        // hostile ones, which reach the handlers' field checks, the chat template and the engine.
        var gen = Gen.Int[0, s_seeds.Length - 1].SelectMany(i => Gen.Frequency(
            (1, Mutations.Of([Encoding.UTF8.GetBytes(s_seeds[i].Body)], 0, s_tokens, maxOperations: 2)),
            (3, JsonMutations.Of(s_seeds[i].Body))).Select(body => (Seed: i, Body: body)));
        uint stream = FuzzHarnessTests.Fnv(nameof(MutatedRequestBodiesGetAnAnswerNeverA500));
        var statuses = new SortedDictionary<int, int>();
        var clock = System.Diagnostics.Stopwatch.StartNew();
        const int count = 600;
        for (int i = 0; i < count; i++)
        {
            var (seed, body) = gen.Generate(new PCG(stream, (ulong)i), null!, out _);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            using var content = new ByteArrayContent(body);
            content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            HttpResponseMessage response;
            string text;
            try
            {
                response = await server.Http.PostAsync(s_seeds[seed].Path, content, timeout.Token);
                text = await response.Content.ReadAsStringAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                Assert.Fail($"input {i} (stream {stream}): no answer within 30 s from {s_seeds[seed].Path} for {Show(body)}");
                return;
            }
            using (response)
            {
                int status = (int)response.StatusCode;
                statuses[status] = statuses.GetValueOrDefault(status) + 1;
                Assert.True(status is >= 200 and < 300 or >= 400 and < 500,
                    $"input {i} (stream {stream}): {s_seeds[seed].Path} answered {status} to {Show(body)}\n{text}");
                if (status >= 400)
                {
                    var error = JsonNode.Parse(text)?["error"];
                    Assert.False(string.IsNullOrWhiteSpace(error?["message"]?.GetValue<string>()), $"input {i}: a {status} without an error message: {text}");
                }
            }
        }
        output.WriteLine($"{count} mutated bodies in {clock.Elapsed.TotalSeconds:F1} s; statuses {string.Join(", ", statuses.Select(kv => $"{kv.Key}: {kv.Value}"))}");
        await server.WaitForIdleAsync();
    }

    [Fact]
    public async Task ClientsThatHangUpMidStreamLeaveTheServerServing()
    {
        var gen = Gen.Select(Gen.Int[0, 1], Gen.Int[0, 400], Gen.Bool);
        uint stream = FuzzHarnessTests.Fnv(nameof(ClientsThatHangUpMidStreamLeaveTheServerServing));
        const int count = 16;
        for (int i = 0; i < count; i++)
        {
            var (which, bytesBeforeHangUp, cancelRatherThanDispose) = gen.Generate(new PCG(stream, (ulong)i), null!, out _);
            string path = which == 0 ? "/v1/chat/completions" : "/v1/completions";
            string body = which == 0
                ? """{"model":"qa","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":100,"stream":true,"ignore_eos":true,"chat_template_kwargs":{"ask":true}}"""
                : """{"model":"story","prompt":"Once upon a time","max_tokens":100,"stream":true,"ignore_eos":true,"n":2}""";
            using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var hangUp = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            var response = await server.Http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, hangUp.Token);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path} {body}: {response.StatusCode} {await response.Content.ReadAsStringAsync(hangUp.Token)}");
            var sse = await response.Content.ReadAsStreamAsync(hangUp.Token);
            var buffer = new byte[Math.Max(1, bytesBeforeHangUp)];
            int read = 0;
            while (read < bytesBeforeHangUp)
            {
                int n = await sse.ReadAsync(buffer.AsMemory(read), hangUp.Token);
                if (n == 0) break;
                read += n;
            }
            // Hang up: either cancel the read in flight or just drop the connection.
            if (cancelRatherThanDispose) await hangUp.CancelAsync();
            sse.Dispose();
            response.Dispose();
        }
        await server.WaitForIdleAsync();   // every cancelled request's KV blocks freed
        var (status, answer) = await server.PostAsync("/v1/completions", new { model = "stories", prompt = "Once upon", max_tokens = 3 });
        Assert.Equal(200, status);
        Assert.NotNull(answer["choices"]);
        output.WriteLine($"{count} streams cut off; KV pool back to empty, still serving");
    }

    [Theory]
    [InlineData("""{"model":"stories","prompt":"a\ud800b","max_tokens":2}""", "surrogate")]
    [InlineData("""{"model":"stories","prompt":"x","prompt":"y","max_tokens":2}""", "prompt")]
    [InlineData("""{"model":"stories","prompt":"aÿb","max_tokens":2}""", "UTF-8")]
    public async Task BodiesSystemTextJsonOnlyRejectsLateAreA400(string body, string named)
    {
        // Found by the harnesses: half a surrogate pair, a key given twice and invalid UTF-8 parse, then throw
        // (InvalidOperationException, ArgumentException) when the handler reads the field: a 500 before.
        var bytes = Encoding.Latin1.GetBytes(body);   // U+00FF stands for the lone byte 0xFF
        using var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var response = await server.Http.PostAsync("/v1/completions", content);
        string text = await response.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(named, JsonNode.Parse(text)!["error"]!["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    private static string Show(byte[] body) => FuzzHarnessTests.Preview(body);
}
