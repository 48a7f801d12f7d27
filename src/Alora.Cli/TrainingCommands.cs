using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Alora.Training;

namespace Alora.Cli;

/// <summary>`alora grad`: one training step's loss and adapter gradients, without updating anything.</summary>
internal static class TrainingCommands
{
    public static Command Grad()
    {
        var model = new Option<string>("--model", "-m") { Description = "Base model: Hugging Face folder or .gguf file", Required = true };
        var adapter = new Option<string>("--adapter", "-a") { Description = "PEFT LoRA / aLoRA adapter folder", Required = true };
        var batch = new Option<string>("--batch", "-b")
        {
            Description = "JSON batch: an array of rows, or an object with a \"batch\" array; each row has \"input_ids\" and optional \"labels\" (-100 = no loss; default: the ids)",
            Required = true,
        };
        var output = new Option<string?>("--out", "-o") { Description = "safetensors file for d loss / d lora_A and lora_B, under PEFT's key names" };
        var checkpointing = new Option<bool>("--gradient-checkpointing") { Description = "Keep only each layer's input and recompute the layer in the backward pass" };
        var command = new Command("grad", "Compute the causal-LM loss of a batch and its gradients with respect to an adapter's A and B (aLoRA rows adapted from the last invocation occurrence); prints JSON");
        foreach (var o in new Option[] { model, adapter, batch, output, checkpointing }) command.Options.Add(o);
        command.SetAction(parse => RunGrad(parse.GetValue(model)!, parse.GetValue(adapter)!, parse.GetValue(batch)!, parse.GetValue(output), parse.GetValue(checkpointing), Console.Out));
        return command;
    }

    internal static int RunGrad(string modelPath, string adapterPath, string batchPath, string? outputPath, bool checkpointing, TextWriter output)
    {
        using var weights = ModelWeights.Load(modelPath);
        // A legacy IBM aLoRA names its invocation as a string: the base model's tokenizer turns it into ids.
        var adapterConfig = LoraConfig.Load(Path.Combine(adapterPath, LoraAdapter.ConfigFileName));
        using var adapter = LoraAdapter.Load(adapterPath, weights.Config, tokenizer: adapterConfig.IsLegacyAlora ? Tokenization.Tokenizer.Load(modelPath) : null);
        using var lora = new TrainableLora(adapter);
        var rows = ReadBatch(batchPath, lora);
        using var trainer = new DecoderTrainer(weights, lora, rows.Count, rows.Max(r => r.InputIds.Length), checkpointing);
        double loss = trainer.ForwardBackward(rows);

        var norms = new JsonObject();
        var tensors = new List<SafeTensorToWrite>();
        foreach (var m in lora.Modules)
        {
            foreach (var (suffix, gradient, shape) in new[]
            {
                ("lora_A", m.AGradient.ToArray(), new long[] { m.Rank, m.InFeatures }),
                ("lora_B", m.BGradient.ToArray(), new long[] { m.OutFeatures, m.Rank }),
            })
            {
                string key = $"{m.PeftPrefix}.{suffix}.weight";
                norms[key] = Math.Sqrt(gradient.Sum(g => (double)g * g));
                tensors.Add(SafeTensorToWrite.FromFloats(key, shape, gradient));
            }
        }
        if (outputPath is not null) SafeTensorsWriter.Write(outputPath, tensors);
        var result = new JsonObject
        {
            ["loss"] = loss,
            ["n_loss_tokens"] = trainer.LabelCount,
            ["first_adapted_positions"] = new JsonArray([.. rows.Select(r => r.AdapterStart is int s ? JsonValue.Create(s) : null)]),
            ["grad_norms"] = norms,
        };
        output.WriteLine(result.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    /// <summary>Rows of the batch file; each row's adapter start follows the adapter's rule on its full ids.</summary>
    private static List<TrainingRow> ReadBatch(string path, TrainableLora lora)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"batch file not found: {path}");
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(path));
        }
        catch (JsonException e)
        {
            throw new CliException($"{path}: not valid JSON ({e.Message})");
        }
        var array = root as JsonArray ?? (root as JsonObject)?["batch"] as JsonArray
            ?? throw new CliException($"{path}: expected an array of rows or an object with a \"batch\" array");
        if (array.Count == 0) throw new CliException($"{path}: the batch has no rows");
        var rows = new List<TrainingRow>();
        for (int r = 0; r < array.Count; r++)
        {
            var row = array[r] as JsonObject ?? throw new CliException($"{path}: row {r} is not an object");
            int[] ids = Ints(row["input_ids"], path, r, "input_ids") ?? throw new CliException($"{path}: row {r} has no \"input_ids\"");
            int[] labels = Ints(row["labels"], path, r, "labels") ?? ids;
            if (labels.Length != ids.Length) throw new CliException($"{path}: row {r} has {labels.Length} labels for {ids.Length} input_ids");
            rows.Add(TrainingRow.For(ids, labels, lora));
        }
        return rows;
    }

    private static int[]? Ints(JsonNode? node, string path, int row, string field)
    {
        if (node is null) return null;
        if (node is not JsonArray array) throw new CliException($"{path}: row {row} \"{field}\" must be an array of integers");
        var values = new int[array.Count];
        for (int i = 0; i < values.Length; i++)
        {
            if (array[i] is not JsonValue value || !value.TryGetValue(out int number))
                throw new CliException($"{path}: row {row} \"{field}\"[{i}] is {array[i]?.ToJsonString() ?? "null"}, expected an integer");
            values[i] = number;
        }
        return values;
    }
}
