using System.CommandLine;
using Alora.Cli;
using Alora.Formats;

// `alora`: each command group lives in its own file and contributes its commands here.
var root = new RootCommand("Alora: LoRA and Activated LoRA (aLoRA) for Llama-family models on CPU.");
foreach (var command in CommandCatalog.All()) root.Subcommands.Add(command);
var configuration = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
try
{
    return await root.Parse(args).InvokeAsync(configuration).ConfigureAwait(false);
}
catch (Exception e) when (e is CliException or ModelFormatException or FileNotFoundException or DirectoryNotFoundException or ArgumentException or InvalidDataException
    or Alora.Inference.InvocationNotFoundException or Alora.Inference.KvCacheFullException or Alora.Training.Data.TrainingDataException or HttpRequestException)
{
    // The library names its own concepts; the command line adds the flag that sets them.
    string hint = e is Alora.Inference.InvocationNotFoundException ? " (on the command line: --on-missing-invocation base)" : "";
    Console.Error.WriteLine($"error: {e.Message}{hint}");
    return 2;
}
catch (OperationCanceledException)
{
    Console.Error.WriteLine("cancelled");
    return 130;
}
