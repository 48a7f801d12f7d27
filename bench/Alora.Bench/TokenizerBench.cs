using System.Diagnostics;
using System.Text;
using System.Text.Json;
using Alora.Tokenization;

namespace Alora.Bench;

/// <summary>
/// Encode throughput (MB/s of UTF-8 input) of Alora's tokenizers on GSM8K, against transformers.js run in
/// the same process tree on the same documents: one warm-up pass, then the best of N passes, for a
/// byte-level BPE (granite3) and a SentencePiece BPE (maykeye-tinyllama-v0).
/// Usage: tokenizers [--shared DIR] [--corpus FILE] [--passes N] [--no-peer]
/// </summary>
internal static class TokenizerBench
{
    private sealed record Result(string Tokenizer, long Bytes, long Tokens, double BestSeconds)
    {
        public double MegabytesPerSecond => Bytes / 1e6 / BestSeconds;
    }

    public static int Run(string[] args)
    {
        string shared = Argument(args, "--shared") ?? FindShared();
        string corpus = Argument(args, "--corpus") ?? Path.Combine(shared, "data", "gsm8k", "train.jsonl");
        int passes = int.Parse(Argument(args, "--passes") ?? "3", System.Globalization.CultureInfo.InvariantCulture);
        bool runPeer = !args.Contains("--no-peer");
        var documents = ReadDocuments(corpus, ["question", "answer"]);
        long bytes = documents.Sum(d => (long)Encoding.UTF8.GetByteCount(d));
        Console.WriteLine($"corpus: {corpus} ({documents.Count} documents, {bytes / 1e6:F2} MB), best of {passes} passes after a warm-up; {Environment.ProcessorCount} cores");
        Console.WriteLine();
        Console.WriteLine("| tokenizer | kind | Alora MB/s | transformers.js MB/s | ratio | tokens (Alora / peer) |");
        Console.WriteLine("| --- | --- | ---: | ---: | ---: | --- |");

        foreach (var (name, kind) in new[] { ("granite3", "byte-level BPE"), ("maykeye-tinyllama-v0", "SentencePiece BPE") })
        {
            string folder = Path.Combine(shared, "tokenizers", name);
            var alora = MeasureAlora(name, folder, documents, bytes, passes);
            var peer = runPeer ? MeasurePeer(folder, corpus, passes) : null;
            string peerText = peer == null ? "n/a" : $"{peer.MegabytesPerSecond:F2}";
            string ratio = peer == null ? "n/a" : $"{alora.MegabytesPerSecond / peer.MegabytesPerSecond:F2}×";
            Console.WriteLine($"| {name} | {kind} | {alora.MegabytesPerSecond:F2} | {peerText} | {ratio} | {alora.Tokens} / {(peer == null ? "n/a" : peer.Tokens.ToString(System.Globalization.CultureInfo.InvariantCulture))} |");
        }
        return 0;
    }

    private static Result MeasureAlora(string name, string folder, List<string> documents, long bytes, int passes)
    {
        var tokenizer = Tokenizer.FromModelFolder(folder);
        long tokens = EncodeAll(tokenizer, documents); // warm-up: JIT, regex compilation, the BPE word cache
        double best = double.MaxValue;
        for (int i = 0; i < passes; i++)
        {
            var watch = Stopwatch.StartNew();
            tokens = EncodeAll(tokenizer, documents);
            best = Math.Min(best, watch.Elapsed.TotalSeconds);
        }
        return new Result(name, bytes, tokens, best);
    }

    private static long EncodeAll(Tokenizer tokenizer, List<string> documents)
    {
        long tokens = 0;
        foreach (var document in documents) tokens += tokenizer.Encode(document).Length;
        return tokens;
    }

    private static Result? MeasurePeer(string folder, string corpus, int passes)
    {
        string script = Path.Combine(FindRepositoryRoot(), "bench", "peers", "transformersjs", "run.sh");
        var start = new ProcessStartInfo("bash", [script, folder, corpus, "question,answer", passes.ToString(System.Globalization.CultureInfo.InvariantCulture)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        string? line = output.Split('\n').LastOrDefault(l => l.StartsWith('{'));
        if (process.ExitCode != 0 || line == null)
        {
            Console.Error.WriteLine($"transformers.js peer failed (exit {process.ExitCode}): {error.Trim()}");
            return null;
        }
        using var json = JsonDocument.Parse(line);
        var root = json.RootElement;
        return new Result("transformers.js", root.GetProperty("bytes").GetInt64(), root.GetProperty("tokens").GetInt64(), root.GetProperty("best_seconds").GetDouble());
    }

    /// <summary>Each JSONL record's fields joined by "\n": the same documents the peer script builds.</summary>
    private static List<string> ReadDocuments(string path, string[] fields)
    {
        var documents = new List<string>();
        foreach (var line in File.ReadAllText(path).Split('\n'))
        {
            if (line.Length == 0) continue;
            using var record = JsonDocument.Parse(line);
            documents.Add(string.Join("\n", fields.Select(f => record.RootElement.TryGetProperty(f, out var v) ? v.GetString() : "")));
        }
        return documents;
    }

    private static string? Argument(string[] args, string name)
    {
        int index = Array.IndexOf(args, name);
        return index >= 0 && index + 1 < args.Length ? args[index + 1] : null;
    }

    private static string FindRepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Alora.slnx"))) return dir.FullName;
        throw new DirectoryNotFoundException($"No Alora.slnx above {AppContext.BaseDirectory}.");
    }

    private static string FindShared() => Path.GetFullPath(Path.Combine(FindRepositoryRoot(), "..", "shared"));
}
