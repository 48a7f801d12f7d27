using System.CommandLine;

namespace Alora.Cli;

/// <summary>The list of top-level commands. Add a line when a command group lands.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return GenerateCommands.Generate();
        yield return GenerateCommands.Logits();
        yield return TrainCommands.Train();
        yield return TokenizeCommands.Tokenize();
        yield return TokenizeCommands.Detokenize();
        yield return TemplateCommands.Template();
        yield return AdapterCommands.Adapter();
        yield return TrainingCommands.Grad();
        yield return ServeCommands.Serve();
        yield return ChatCommands.Chat();
        yield return QuantizeCommands.Quantize();
    }
}
