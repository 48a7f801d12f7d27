namespace Alora.Tokenization.Templates;

/// <summary>
/// Recursive-descent parser for Jinja2 statements (this file) and expressions (TemplateParser.Expressions.cs).
/// Filters and tests are resolved here, so an unknown name is a syntax error with its position, as Jinja2
/// reports it at compile time.
/// </summary>
internal sealed partial class TemplateParser
{
    private readonly List<TemplateToken> _tokens;
    private readonly SourcePositions _positions;
    private int _index;
    private int _loopDepth;
    // Jinja2 lets an unknown filter or test inside an if-block or an inline if pass compilation and fail
    // only when evaluated ("soft" frames); anywhere else it is a compile-time error. Unknown names are
    // collected here and reported after parsing, as Jinja2 reports them when compiling.
    private int _softDepth;
    private readonly List<(TemplateSyntaxException Error, bool Soft)> _unknownNames = [];
    // Names read inside the macro (and caller) bodies being parsed: Jinja2 lets a macro take extra
    // positional or keyword arguments, or a caller, only if its body mentions varargs, kwargs or caller.
    private readonly List<HashSet<string>> _macroBodyNames = [];

    private TemplateParser(List<TemplateToken> tokens, SourcePositions positions)
    {
        _tokens = tokens;
        _positions = positions;
    }

    public static IReadOnlyList<Statement> Parse(List<TemplateToken> tokens, SourcePositions positions)
    {
        var parser = new TemplateParser(tokens, positions);
        var body = parser.ParseBody(endTags: []);
        var end = parser.Current;
        if (end.Kind != TokenKind.EndOfTemplate) throw parser.Error($"unexpected {end.Describe()}", end);
        foreach (var (error, soft) in parser._unknownNames)
            if (!soft) throw error;
        return body;
    }

    private TemplateToken Current => _tokens[_index];
    private TemplateToken Peek(int ahead = 1) => _tokens[Math.Min(_index + ahead, _tokens.Count - 1)];
    private TemplateToken Advance() => _tokens[_index++];

    private TemplateSyntaxException Error(string detail, TemplateToken at) => _positions.SyntaxError(detail, at.Offset);

    private TemplateToken Expect(TokenKind kind, string? value, string context)
    {
        var token = Current;
        if (token.Kind != kind || (value is not null && token.Value != value))
        {
            string expected = value is not null ? $"'{value}'" : kind switch
            {
                TokenKind.Name => "a name",
                TokenKind.BlockEnd => "'%}'",
                TokenKind.VariableEnd => "'}}'",
                _ => kind.ToString(),
            };
            throw Error($"expected {expected} {context}, found {token.Describe()}", token);
        }
        return Advance();
    }

    private bool SkipOperator(string op)
    {
        if (!Current.IsOperator(op)) return false;
        _index++;
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name)) return false;
        _index++;
        return true;
    }

    /// <summary>Parses statements until a block tag whose name is one of <paramref name="endTags"/>
    /// (left unconsumed, positioned at the tag name) or the end of the template.</summary>
    // Expressions and blocks nested inside one another, against TemplateLimits.MaxNesting.
    private int _nesting;

    private void Enter(TemplateToken at)
    {
        if (++_nesting > TemplateLimits.MaxNesting)
        {
            _nesting--;
            throw Error($"the template nests expressions and blocks deeper than {TemplateLimits.MaxNesting} levels", at);
        }
        // Binary operators chain iteratively, so a long flat expression can still build a deep tree: stop before the stack does.
        if (!System.Runtime.CompilerServices.RuntimeHelpers.TryEnsureSufficientExecutionStack())
        {
            _nesting--;
            throw Error("the template is too deeply nested to parse", at);
        }
    }

    private List<Statement> ParseBody(string[] endTags)
    {
        Enter(Current);
        try { return ParseBodyCore(endTags); }
        finally { _nesting--; }
    }

    private List<Statement> ParseBodyCore(string[] endTags)
    {
        var body = new List<Statement>();
        while (true)
        {
            var token = Current;
            switch (token.Kind)
            {
                case TokenKind.EndOfTemplate:
                    return body;
                case TokenKind.Data:
                    Advance();
                    body.Add(new TextStatement(token.Value, token.Offset));
                    break;
                case TokenKind.VariableBegin:
                    Advance();
                    var expression = ParseTuple(allowConditional: true);
                    Expect(TokenKind.VariableEnd, null, "to close the expression");
                    body.Add(new OutputStatement(expression, token.Offset));
                    break;
                case TokenKind.BlockBegin:
                    var tag = Peek();
                    if (tag.Kind == TokenKind.Name && Array.IndexOf(endTags, tag.Value) >= 0)
                    {
                        Advance();
                        return body;
                    }
                    Advance();
                    body.Add(ParseStatement(token));
                    break;
                default:
                    throw Error($"unexpected {token.Describe()}", token);
            }
        }
    }

    private Statement ParseStatement(TemplateToken blockBegin)
    {
        var tag = Current;
        if (tag.Kind != TokenKind.Name) throw Error($"expected a tag name after '{{%', found {tag.Describe()}", tag);
        Advance();
        switch (tag.Value)
        {
            case "if": return ParseIf(blockBegin);
            case "for": return Hard(() => ParseFor(blockBegin));
            case "set": return ParseSet(blockBegin);
            case "macro": return Hard(() => ParseMacro(blockBegin));
            case "call": return Hard(() => ParseCallBlock(blockBegin));
            case "filter": return Hard(() => ParseFilterBlock(blockBegin));
            case "with": return Hard(() => ParseWith(blockBegin));
            case "generation":
                return Hard(() =>
                {
                    EndTag();
                    int savedLoopDepth = _loopDepth;
                    _loopDepth = 0;  // the body is a call-block function: break/continue cannot reach an outer loop
                    var body = ParseBodyUntil("generation", blockBegin, "endgeneration");
                    _loopDepth = savedLoopDepth;
                    EndTag();
                    return new GenerationBlockStatement(body, blockBegin.Offset);
                });
            case "break" or "continue":
                if (_loopDepth == 0) throw Error($"'{tag.Value}' outside of a for loop", tag);
                EndTag();
                return new LoopControlStatement(tag.Value == "break" ? Flow.Break : Flow.Continue, blockBegin.Offset);
            case "endif" or "endfor" or "endset" or "endmacro" or "endcall" or "endfilter" or "endwith" or "endgeneration"
                or "elif" or "else":
                throw Error($"unexpected '{tag.Value}': no open block expects it here", tag);
            case "include" or "import" or "from" or "extends" or "block" or "endblock" or "do" or "autoescape":
                throw Error($"the '{tag.Value}' tag is not supported in chat templates", tag);
            default:
                throw Error($"unknown tag '{tag.Value}'", tag);
        }
    }

    private void EndTag(string context = "to close the tag") => Expect(TokenKind.BlockEnd, null, context);

    /// <summary>Parses a body that must end with one of <paramref name="endTags"/>; returns with the end tag
    /// name as the current token.</summary>
    private List<Statement> ParseBodyUntil(string blockName, TemplateToken blockBegin, params string[] endTags)
    {
        var body = ParseBody(endTags);
        if (Current.Kind == TokenKind.EndOfTemplate)
            throw Error($"unexpected end of template: the '{blockName}' block opened here was never closed (expected {string.Join(" or ", endTags.Select(t => $"'{{% {t} %}}'"))})", blockBegin);
        Advance();  // the end tag name
        return body;
    }

    private IfStatement ParseIf(TemplateToken blockBegin)
    {
        _softDepth++;
        try { return ParseIfBranches(blockBegin); }
        finally { _softDepth--; }
    }

    /// <summary>Runs a parse step outside any soft frame (loop, macro, call, filter and with bodies
    /// are new frames in Jinja2, even inside an if).</summary>
    private T Hard<T>(Func<T> parse)
    {
        int saved = _softDepth;
        _softDepth = 0;
        try { return parse(); }
        finally { _softDepth = saved; }
    }

    private IfStatement ParseIfBranches(TemplateToken blockBegin)
    {
        var branches = new List<(Expression, IReadOnlyList<Statement>)>();
        List<Statement>? elseBody = null;
        var condition = ParseTuple(allowConditional: true);
        EndTag();
        while (true)
        {
            var body = ParseBodyUntil("if", blockBegin, "elif", "else", "endif");
            branches.Add((condition, body));
            string endedBy = _tokens[_index - 1].Value;
            if (endedBy == "elif")
            {
                condition = ParseTuple(allowConditional: true);
                EndTag();
                continue;
            }
            if (endedBy == "else")
            {
                EndTag();
                elseBody = ParseBodyUntil("if", blockBegin, "endif");
            }
            EndTag();
            return new IfStatement(branches, elseBody, blockBegin.Offset);
        }
    }

    private ForStatement ParseFor(TemplateToken blockBegin)
    {
        var target = ParseAssignTarget(allowAttribute: false, "after 'for'");
        Expect(TokenKind.Name, "in", "after the loop variable(s)");
        var iterable = ParseTuple(allowConditional: false);
        Expression? condition = null;
        if (SkipName("if")) condition = ParseExpression(allowConditional: true);
        bool recursive = SkipName("recursive");
        EndTag();
        _loopDepth++;
        var body = ParseBodyUntil("for", blockBegin, "else", "endfor");
        _loopDepth--;
        List<Statement>? elseBody = null;
        if (_tokens[_index - 1].Value == "else")
        {
            EndTag();
            int savedDepth = _loopDepth;
            _loopDepth = 0;
            elseBody = ParseBodyUntil("for", blockBegin, "endfor");
            _loopDepth = savedDepth;
        }
        EndTag();
        return new ForStatement(target, iterable, condition, body, elseBody, recursive, blockBegin.Offset);
    }

    private Statement ParseSet(TemplateToken blockBegin)
    {
        var target = ParseAssignTarget(allowAttribute: true, "after 'set'");
        if (SkipOperator("="))
        {
            var value = ParseTuple(allowConditional: true);
            EndTag();
            return new SetStatement(target, value, blockBegin.Offset);
        }
        var filters = new List<FilterExpression>();
        while (Current.IsOperator("|"))
        {
            Advance();
            filters.Add(ParseFilterCall(new LiteralExpression(null, Current.Offset)));
        }
        EndTag("after the set-block target (or '=' for an assignment)");
        var body = ParseBodyUntil("set", blockBegin, "endset");
        EndTag();
        return new SetBlockStatement(target, body, filters, blockBegin.Offset);
    }

    /// <summary>Names (<c>a</c>, <c>a, b</c>, <c>(a, b)</c>) or a namespace attribute <c>ns.attr</c>.</summary>
    private AssignTarget ParseAssignTarget(bool allowAttribute, string context)
    {
        var start = Current;
        bool parenthesized = SkipOperator("(");
        var first = Expect(TokenKind.Name, null, context);
        if (allowAttribute && !parenthesized && Current.IsOperator("."))
        {
            Advance();
            var attribute = Expect(TokenKind.Name, null, "after '.' in the assignment target");
            return new AssignTarget([first.Value], unpack: false, attribute.Value, start.Offset);
        }
        var names = new List<string> { first.Value };
        bool unpack = parenthesized;
        while (SkipOperator(","))
        {
            unpack = true;
            if (Current.Kind != TokenKind.Name) break;
            names.Add(Advance().Value);
        }
        if (parenthesized) Expect(TokenKind.Operator, ")", "to close the assignment target");
        foreach (var name in names)
            if (name is "true" or "false" or "none" or "True" or "False" or "None")
                throw Error($"cannot assign to '{name}'", start);
        return new AssignTarget(names, unpack, null, start.Offset);
    }

    private List<(string Name, Expression? Default)> ParseParameters(string what)
    {
        var parameters = new List<(string, Expression?)>();
        Expect(TokenKind.Operator, "(", $"to open the {what} parameter list");
        bool sawDefault = false;
        while (!Current.IsOperator(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",", $"between {what} parameters");
            if (Current.IsOperator(")")) break;
            var name = Expect(TokenKind.Name, null, $"as a {what} parameter");
            Expression? defaultValue = null;
            if (SkipOperator("="))
            {
                defaultValue = ParseExpression(allowConditional: true);
                sawDefault = true;
            }
            else if (sawDefault)
            {
                throw Error($"parameter '{name.Value}' without a default follows one with a default", name);
            }
            parameters.Add((name.Value, defaultValue));
        }
        Advance();
        return parameters;
    }

    private MacroStatement ParseMacro(TemplateToken blockBegin)
    {
        var name = Expect(TokenKind.Name, null, "as the macro name");
        var parameters = ParseParameters("macro");
        EndTag();
        int savedDepth = _loopDepth;
        _loopDepth = 0;
        var (body, signature) = ParseMacroBody(() => ParseBodyUntil("macro", blockBegin, "endmacro"));
        _loopDepth = savedDepth;
        if (Current.Kind == TokenKind.Name && Current.Value == name.Value) Advance();
        EndTag();
        return new MacroStatement(name.Value, parameters, body, signature, blockBegin.Offset);
    }

    private CallBlockStatement ParseCallBlock(TemplateToken blockBegin)
    {
        var parameters = Current.IsOperator("(") ? ParseParameters("caller") : [];
        var callToken = Current;
        if (ParseExpression(allowConditional: false) is not CallExpression call)
            throw Error("expected a macro call after 'call'", callToken);
        EndTag();
        var (body, signature) = ParseMacroBody(() => ParseBodyUntil("call", blockBegin, "endcall"));
        EndTag();
        return new CallBlockStatement(call, parameters, body, signature, blockBegin.Offset);
    }

    private (List<Statement> Body, MacroSignature Signature) ParseMacroBody(Func<List<Statement>> parseBody)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        _macroBodyNames.Add(names);
        List<Statement> body;
        try { body = parseBody(); }
        finally { _macroBodyNames.RemoveAt(_macroBodyNames.Count - 1); }
        return (body, new MacroSignature(names.Contains("varargs"), names.Contains("kwargs"), names.Contains("caller")));
    }

    private FilterBlockStatement ParseFilterBlock(TemplateToken blockBegin)
    {
        var filters = new List<FilterExpression> { ParseFilterCall(new LiteralExpression(null, Current.Offset)) };
        while (SkipOperator("|")) filters.Add(ParseFilterCall(new LiteralExpression(null, Current.Offset)));
        EndTag();
        var body = ParseBodyUntil("filter", blockBegin, "endfilter");
        EndTag();
        return new FilterBlockStatement(filters, body, blockBegin.Offset);
    }

    private WithStatement ParseWith(TemplateToken blockBegin)
    {
        var assignments = new List<(AssignTarget, Expression)>();
        while (Current.Kind != TokenKind.BlockEnd)
        {
            if (assignments.Count > 0) Expect(TokenKind.Operator, ",", "between with-assignments");
            var target = ParseAssignTarget(allowAttribute: false, "in 'with'");
            Expect(TokenKind.Operator, "=", "in a with-assignment");
            assignments.Add((target, ParseExpression(allowConditional: true)));
        }
        EndTag();
        var body = ParseBodyUntil("with", blockBegin, "endwith");
        EndTag();
        return new WithStatement(assignments, body, blockBegin.Offset);
    }
}
