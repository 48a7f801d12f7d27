using System.CommandLine;

namespace Alora.Cli;

/// <summary>The list of top-level commands. Add a line when a command group lands.</summary>
internal static class CommandCatalog
{
    public static IEnumerable<Command> All()
    {
        yield return TemplateCommands.Template();
    }
}
