using System.Diagnostics;
using System.Globalization;
using System.Text;
using Alora.Inference;
using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Bench;

/// <summary>
/// Time to first token of an aLoRA call that follows a base-model conversation of N tokens, with the
/// conversation's KV cache reused, against the same call made with a plain LoRA of the same rank and targets,
/// which must recompute the whole context. Random-weight SmolLM2-135M shape; r = 8 on q, k, v.
/// </summary>
internal static class AloraTtftBench
{
    private static readonly int[] Invocation = [13, 473, 467];

    internal static unsafe (ForwardAdapter Adapter, NativeSlab Slab) RandomAdapter(ModelConfig config, string name, int[]? invocation, int rank)
    {
        string[] targets = ["q_proj", "k_proj", "v_proj"];
        long floats = 0;
        foreach (var module in targets)
        {
            var (o, i) = ParameterLayout.ProjectionShape(config, module);
            floats += (long)config.LayerCount * rank * (o + i);
        }
        var slab = new NativeSlab(floats * 4 + 4096L * config.LayerCount, name);
        var adapter = new ForwardAdapter(name, config.LayerCount, invocation);
        var random = new Random(name.Length);
        foreach (var module in targets)
        {
            var (o, i) = ParameterLayout.ProjectionShape(config, module);
            for (int layer = 0; layer < config.LayerCount; layer++)
            {
                float* a = slab.TakeFloats((long)rank * i, "A"), b = slab.TakeFloats((long)o * rank, "B");
                for (long k = 0; k < (long)rank * i; k++) a[k] = (float)(random.NextDouble() - 0.5) * 0.1f;
                for (long k = 0; k < (long)o * rank; k++) b[k] = (float)(random.NextDouble() - 0.5) * 0.01f;
                adapter.Set(layer, module, new LowRankDelta(new WeightMatrix(a, DType.F32, rank, i), new WeightMatrix(b, DType.F32, o, rank), 2f));
            }
        }
        return (adapter, slab);
    }

    /// <summary>Seconds from the request to its first sampled token (prefill of what is not cached, then argmax).</summary>
    private static async Task<double> FirstTokenSeconds(Generator generator, GenerationRequest request, KvSequence sequence)
    {
        long start = Stopwatch.GetTimestamp();
        await foreach (var update in generator.GenerateAsync(request with { MaxTokens = 1 }, sequence))
            if (update.TokenId >= 0) return Stopwatch.GetElapsedTime(start).TotalSeconds;
        throw new InvalidOperationException("no token was generated");
    }

    public static async Task Run(string sharedRoot, int[] lengths, string? svgPath)
    {
        var config = ModelConfig.FromFile(Path.Combine(sharedRoot, "configs", "smollm2-135m", "config.json"));
        using var weights = ModelWeights.CreateRandom(config, DType.BF16, seed: 3);
        using var model = new DecoderModel(weights, maxBatchTokens: 512);
        var (alora, aloraSlab) = RandomAdapter(config, "alora", Invocation, 8);
        var (lora, loraSlab) = RandomAdapter(config, "lora", null, 8);
        using var _1 = aloraSlab;
        using var _2 = loraSlab;
        var generator = new Generator(model, []);
        using var cache = model.CreateCache(2 * (lengths.Max() + 64));   // the reused conversation and the LoRA's fresh one
        var rows = new List<(int Length, double Alora, double Lora)>();
        using (var warmUp = new KvSequence(cache))   // JIT and first-use costs stay out of the first row
        {
            await FirstTokenSeconds(generator, new GenerationRequest { PromptIds = [1, 600, 601, .. Invocation] }, warmUp);
            await FirstTokenSeconds(generator, new GenerationRequest { PromptIds = [1, 600, 601, .. Invocation], Adapter = alora }, warmUp);
        }
        Console.WriteLine("| conversation tokens | aLoRA TTFT, base KV reused (ms) | LoRA TTFT, full recompute (ms) | LoRA / aLoRA |");
        Console.WriteLine("| ---: | ---: | ---: | ---: |");
        foreach (int length in lengths)
        {
            var random = new Random(length);
            int[] conversation = [1, .. Enumerable.Range(0, length - 1).Select(_ => random.Next(500, config.VocabSize))];
            int[] call = [.. conversation, .. Invocation];

            // The base model has the conversation in its cache (it just produced it).
            using var sequence = new KvSequence(cache);
            await FirstTokenSeconds(generator, new GenerationRequest { PromptIds = conversation }, sequence);
            double aloraSeconds = await FirstTokenSeconds(generator, new GenerationRequest { PromptIds = call, Adapter = alora }, sequence);

            using var fresh = new KvSequence(cache);
            double loraSeconds = await FirstTokenSeconds(generator, new GenerationRequest { PromptIds = call, Adapter = lora }, fresh);
            rows.Add((length, aloraSeconds, loraSeconds));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {length} | {aloraSeconds * 1e3:F1} | {loraSeconds * 1e3:F1} | {loraSeconds / aloraSeconds:F1}x |"));
        }
        if (svgPath is not null)
        {
            File.WriteAllText(svgPath, Plot(rows));
            Console.WriteLine($"plot: {svgPath}");
        }
    }

    /// <summary>A log-scale line chart of both TTFTs against conversation length, as a standalone SVG.</summary>
    private static string Plot(List<(int Length, double Alora, double Lora)> rows)
    {
        const int width = 640, height = 400, left = 70, right = 20, top = 40, bottom = 50;
        double minY = Math.Log10(rows.Min(r => Math.Min(r.Alora, r.Lora)) * 1e3 / 2), maxY = Math.Log10(rows.Max(r => Math.Max(r.Alora, r.Lora)) * 1e3 * 2);
        double minX = Math.Log2(rows.Min(r => r.Length)), maxX = Math.Log2(rows.Max(r => r.Length));
        if (maxX == minX) maxX = minX + 1;
        string X(int length) => (left + (Math.Log2(length) - minX) / (maxX - minX) * (width - left - right)).ToString("F1", CultureInfo.InvariantCulture);
        string Y(double seconds) => (top + (maxY - Math.Log10(seconds * 1e3)) / (maxY - minY) * (height - top - bottom)).ToString("F1", CultureInfo.InvariantCulture);
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{width / 2}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">Time to first token after a base conversation (SmolLM2-135M shape, CPU)</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" y1=\"{height - bottom}\" x2=\"{width - right}\" y2=\"{height - bottom}\" stroke=\"black\"/><line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{height - bottom}\" stroke=\"black\"/>\n");
        for (int p = (int)Math.Ceiling(minY); p <= maxY; p++)
        {
            string y = Y(Math.Pow(10, p) / 1e3);
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" y1=\"{y}\" x2=\"{width - right}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{left - 6}\" y=\"{y}\" text-anchor=\"end\" dy=\"4\">{Math.Pow(10, p)} ms</text>\n");
        }
        foreach (var r in rows)
            svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{X(r.Length)}\" y=\"{height - bottom + 18}\" text-anchor=\"middle\">{r.Length}</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{(left + width - right) / 2}\" y=\"{height - 10}\" text-anchor=\"middle\">conversation tokens</text>\n");
        foreach (var (label, color, pick) in new (string, string, Func<(int Length, double Alora, double Lora), double>)[] { ("LoRA (recompute)", "#c0392b", r => r.Lora), ("aLoRA (base KV reused)", "#2471a3", r => r.Alora) })
        {
            svg.Append("<polyline fill=\"none\" stroke-width=\"2\" stroke=\"").Append(color).Append("\" points=\"");
            foreach (var r in rows) svg.Append(X(r.Length)).Append(',').Append(Y(pick(r))).Append(' ');
            svg.Append("\"/>\n");
            foreach (var r in rows) svg.Append(CultureInfo.InvariantCulture, $"<circle cx=\"{X(r.Length)}\" cy=\"{Y(pick(r))}\" r=\"3\" fill=\"{color}\"/>\n");
        }
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left + 10}\" y=\"{top + 12}\" fill=\"#c0392b\">LoRA: recomputes the whole context</text>\n");
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left + 10}\" y=\"{top + 28}\" fill=\"#2471a3\">aLoRA: reuses the base model's KV cache</text>\n");
        svg.Append("</svg>\n");
        return svg.ToString();
    }
}
