using System.CommandLine;
using Alora.Cli;

// `alora`: each command group lives in its own file and contributes its commands here.
var root = new RootCommand("Alora: LoRA and Activated LoRA (aLoRA) for Llama-family models on CPU.");
foreach (var command in CommandCatalog.All()) root.Subcommands.Add(command);
return await root.Parse(args).InvokeAsync().ConfigureAwait(false);
