using System.CommandLine;
using System.Reflection;

namespace Alora.Tests.Cli;

/// <summary>
/// Runs one of the CLI's commands in-process with stdout captured (tests using it sit in the "Console"
/// collection, which runs alone). Exceptions propagate, so tests can assert on their messages.
/// </summary>
internal static class CliRunner
{
    /// <param name="commandClass">The internal class in Alora.Cli, e.g. "GenerateCommands".</param>
    /// <param name="factory">Its static method that builds the command, e.g. "Generate".</param>
    public static (int ExitCode, string Output) Run(string commandClass, string factory, params string[] args)
        => RunWithInput(null, commandClass, factory, args);

    /// <summary>As <see cref="Run"/>, with <paramref name="input"/> as standard input (a scripted session).</summary>
    public static (int ExitCode, string Output) RunWithInput(string? input, string commandClass, string factory, params string[] args)
    {
        var type = Type.GetType($"Alora.Cli.{commandClass}, Alora.Cli", throwOnError: true)!;
        var command = (Command)type.GetMethod(factory, BindingFlags.Public | BindingFlags.Static)!.Invoke(null, null)!;
        var oldOut = Console.Out;
        var oldIn = Console.In;
        var output = new StringWriter();
        try
        {
            Console.SetOut(output);
            if (input is not null) Console.SetIn(new StringReader(input));
            int code = command.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
            return (code, output.ToString());
        }
        finally
        {
            Console.SetOut(oldOut);
            Console.SetIn(oldIn);
        }
    }
}
