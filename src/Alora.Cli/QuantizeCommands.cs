using System.CommandLine;
using Alora.Models;

namespace Alora.Cli;

/// <summary>`alora quantize IN.gguf OUT.gguf --type Q4_K_M`: a GGUF with its matrices quantized as llama.cpp's quantizer would.</summary>
internal static class QuantizeCommands
{
    public static Command Quantize()
    {
        var input = new Argument<string>("input") { Description = "the .gguf file to quantize (F32, F16, BF16 or quantized tensors)" };
        var output = new Argument<string>("output") { Description = "the .gguf file to write" };
        var type = new Option<string>("--type", "-t") { Description = $"{string.Join(", ", GgufQuantize.Schemes)}", Required = true };
        var command = new Command("quantize", "Quantize a GGUF model's matrices (ggml's reference quantizers; llama.cpp loads the result)");
        command.Arguments.Add(input);
        command.Arguments.Add(output);
        command.Options.Add(type);
        command.SetAction(parse =>
        {
            var report = GgufQuantize.Write(parse.GetValue(input)!, parse.GetValue(output)!, parse.GetValue(type)!);
            string histogram = string.Join(", ", report.Types.Values.GroupBy(t => t).OrderBy(g => g.Key).Select(g => $"{g.Key} ×{g.Count()}"));
            Console.Error.WriteLine($"wrote {report.Output}: {report.OutputBytes / 1e6:F1} MB of tensors (from {report.InputBytes / 1e6:F1} MB); {histogram}");
            return 0;
        });
        return command;
    }
}
