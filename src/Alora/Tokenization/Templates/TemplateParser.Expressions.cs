using System.Globalization;

namespace Alora.Tokenization.Templates;

// Jinja2 expression grammar, loosest binding first:
//   conditional:  or ('if' or ('else' conditional)?)*
//   or / and / not
//   compare:      math1 (('=='|'!='|'<'|'<='|'>'|'>='|'in'|'not in') math1)*
//   math1:        concat (('+'|'-') concat)*
//   concat:       math2 ('~' math2)*
//   math2:        pow (('*'|'/'|'//'|'%') pow)*
//   pow:          unary ('**' unary)*
//   unary:        ('-'|'+') unary | primary postfix* ; then filters '|f', tests 'is t' and calls bind tightest
internal sealed partial class TemplateParser
{
    private Expression ParseTuple(bool allowConditional)
    {
        var start = Current;
        var first = ParseExpression(allowConditional);
        if (!Current.IsOperator(",")) return first;
        var items = new List<Expression> { first };
        while (SkipOperator(","))
        {
            if (IsTupleEnd()) break;
            items.Add(ParseExpression(allowConditional));
        }
        return new ListExpression(items, isTuple: true, start.Offset);
    }

    private bool IsTupleEnd()
    {
        var token = Current;
        return token.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd or TokenKind.EndOfTemplate
               || token.IsOperator(")") || token.IsOperator("]") || token.IsOperator("}")
               || token.IsName("if") || token.IsName("recursive");
    }

    private Expression ParseExpression(bool allowConditional)
    {
        Enter(Current);
        try { return ParseExpressionCore(allowConditional); }
        finally { _nesting--; }
    }

    private Expression ParseExpressionCore(bool allowConditional)
    {
        if (!allowConditional) return ParseOr();
        var start = Current;
        int unknownBefore = _unknownNames.Count;
        var expression = ParseOr();
        bool isConditional = false;
        while (SkipName("if"))
        {
            isConditional = true;
            _softDepth++;
            try
            {
                var condition = ParseOr();
                Expression? otherwise = SkipName("else") ? ParseExpression(allowConditional: true) : null;
                expression = new ConditionalExpression(condition, expression, otherwise, start.Offset);
            }
            finally { _softDepth--; }
        }
        // The whole inline if (its value part included) is a soft frame.
        if (isConditional)
            for (int i = unknownBefore; i < _unknownNames.Count; i++) _unknownNames[i] = (_unknownNames[i].Error, true);
        return expression;
    }

    private Expression ParseOr() => ParseLeftAssociative(ParseAnd, static t => t.IsName("or"),
        static (op, left, right) => new LogicalExpression(isAnd: false, left, right, op.Offset));

    private Expression ParseAnd() => ParseLeftAssociative(ParseNot, static t => t.IsName("and"),
        static (op, left, right) => new LogicalExpression(isAnd: true, left, right, op.Offset));

    private Expression ParseNot()
    {
        if (Current.IsName("not"))
        {
            var op = Advance();
            Enter(op);
            var operand = ParseNot();
            _nesting--;
            return new NotExpression(operand, op.Offset);
        }
        return ParseCompare();
    }

    private Expression ParseCompare()
    {
        var start = Current;
        var first = ParseMath1();
        var links = new List<(string, Expression)>();
        while (true)
        {
            var token = Current;
            if (token.Kind == TokenKind.Operator && token.Value is "==" or "!=" or "<" or "<=" or ">" or ">=")
            {
                Advance();
                links.Add((token.Value, ParseMath1()));
            }
            else if (token.IsName("in"))
            {
                Advance();
                links.Add(("in", ParseMath1()));
            }
            else if (token.IsName("not") && Peek().IsName("in"))
            {
                _index += 2;
                links.Add(("notin", ParseMath1()));
            }
            else
            {
                break;
            }
        }
        return links.Count == 0 ? first : new CompareExpression(first, links, start.Offset);
    }

    private Expression ParseMath1() => ParseLeftAssociative(ParseConcat, static t => t.IsOperator("+") || t.IsOperator("-"), Binary);

    private Expression ParseConcat() => ParseLeftAssociative(ParseMath2, static t => t.IsOperator("~"), Binary);

    private Expression ParseMath2() => ParseLeftAssociative(ParsePow,
        static t => t.Kind == TokenKind.Operator && t.Value is "*" or "/" or "//" or "%", Binary);

    private Expression ParsePow() => ParseLeftAssociative(() => ParseUnary(withFilters: true), static t => t.IsOperator("**"), Binary);

    private static Expression Binary(TemplateToken op, Expression left, Expression right) => new BinaryExpression(op.Value, left, right, op.Offset);

    /// <summary>
    /// One left-associative precedence level: operand (operator operand)*. Each operator deepens the left-leaning
    /// tree, so each counts against the nesting limit until the level returns.
    /// </summary>
    private Expression ParseLeftAssociative(Func<Expression> operand, Func<TemplateToken, bool> isOperator,
        Func<TemplateToken, Expression, Expression, Expression> combine)
    {
        var left = operand();
        int chained = 0;
        while (isOperator(Current))
        {
            var op = Advance();
            Enter(op);
            chained++;
            left = combine(op, left, operand());
        }
        _nesting -= chained;
        return left;
    }

    private Expression ParseUnary(bool withFilters)
    {
        var token = Current;
        Expression expression;
        if (token.IsOperator("-") || token.IsOperator("+"))
        {
            Advance();
            Enter(token);
            try { expression = new NegateExpression(ParseUnary(withFilters: false), negate: token.Value == "-", token.Offset); }
            finally { _nesting--; }
        }
        else
        {
            expression = ParsePrimary();
        }
        expression = ParsePostfix(expression);
        return withFilters ? ParseFiltersAndTests(expression) : expression;
    }

    private Expression ParsePrimary()
    {
        var token = Advance();
        switch (token.Kind)
        {
            case TokenKind.Name:
                return token.Value switch
                {
                    "true" or "True" => new LiteralExpression(true, token.Offset),
                    "false" or "False" => new LiteralExpression(false, token.Offset),
                    "none" or "None" => new LiteralExpression(null, token.Offset),
                    _ => Name(token),
                };
            case TokenKind.String:
                {
                    string text = token.Value;
                    while (Current.Kind == TokenKind.String) text += Advance().Value;  // adjacent literals join
                    return new LiteralExpression(text, token.Offset);
                }
            case TokenKind.Integer:
                {
                    if (long.TryParse(token.Value, NumberStyles.None, CultureInfo.InvariantCulture, out long integer))
                        return new LiteralExpression(integer, token.Offset);
                    return new LiteralExpression(double.Parse(token.Value, CultureInfo.InvariantCulture), token.Offset);
                }
            case TokenKind.Float:
                return new LiteralExpression(double.Parse(token.Value, CultureInfo.InvariantCulture), token.Offset);
            case TokenKind.Operator when token.Value == "(":
                {
                    if (SkipOperator(")")) return new ListExpression([], isTuple: true, token.Offset);
                    var first = ParseExpression(allowConditional: true);
                    if (SkipOperator(")")) return first;
                    var items = new List<Expression> { first };
                    while (SkipOperator(","))
                    {
                        if (Current.IsOperator(")")) break;
                        items.Add(ParseExpression(allowConditional: true));
                    }
                    Expect(TokenKind.Operator, ")", "to close the parenthesis");
                    return new ListExpression(items, isTuple: true, token.Offset);
                }
            case TokenKind.Operator when token.Value == "[":
                {
                    var items = new List<Expression>();
                    while (!Current.IsOperator("]"))
                    {
                        if (items.Count > 0) Expect(TokenKind.Operator, ",", "between list items");
                        if (Current.IsOperator("]")) break;
                        items.Add(ParseExpression(allowConditional: true));
                    }
                    Advance();
                    return new ListExpression(items, isTuple: false, token.Offset);
                }
            case TokenKind.Operator when token.Value == "{":
                {
                    var pairs = new List<(Expression, Expression)>();
                    while (!Current.IsOperator("}"))
                    {
                        if (pairs.Count > 0) Expect(TokenKind.Operator, ",", "between dict items");
                        if (Current.IsOperator("}")) break;
                        var key = ParseExpression(allowConditional: true);
                        Expect(TokenKind.Operator, ":", "after a dict key");
                        pairs.Add((key, ParseExpression(allowConditional: true)));
                    }
                    Advance();
                    return new DictExpression(pairs, token.Offset);
                }
            default:
                throw Error($"unexpected {token.Describe()}, expected an expression", token);
        }
    }

    private NameExpression Name(TemplateToken token)
    {
        foreach (var names in _macroBodyNames) names.Add(token.Value);
        return new NameExpression(token.Value, token.Offset);
    }

    private Expression ParsePostfix(Expression expression)
    {
        for (int links = 0; ; links++)
        {
            var token = Current;
            if (links > TemplateLimits.MaxNesting) throw Error($"more than {TemplateLimits.MaxNesting} attribute, item and call links in one chain", token);
            if (token.IsOperator("."))
            {
                Advance();
                var name = Advance();
                if (name.Kind == TokenKind.Name)
                    expression = new AttributeExpression(expression, name.Value, token.Offset);
                else if (name.Kind == TokenKind.Integer)
                    expression = new ItemExpression(expression, new LiteralExpression(long.Parse(name.Value, CultureInfo.InvariantCulture), name.Offset), token.Offset);
                else
                    throw Error($"expected an attribute name after '.', found {name.Describe()}", name);
            }
            else if (token.IsOperator("["))
            {
                Advance();
                expression = ParseSubscript(expression, token);
            }
            else if (token.IsOperator("("))
            {
                expression = new CallExpression(expression, ParseCallArguments(), token.Offset);
            }
            else
            {
                return expression;
            }
        }
    }

    private Expression ParseSubscript(Expression target, TemplateToken open)
    {
        Expression? start = null;
        if (!Current.IsOperator(":"))
        {
            var key = ParseTuple(allowConditional: true);
            if (!Current.IsOperator(":"))
            {
                Expect(TokenKind.Operator, "]", "to close the subscript");
                return new ItemExpression(target, key, open.Offset);
            }
            start = key;
        }
        Advance();  // ':'
        Expression? stop = null, step = null;
        if (!Current.IsOperator("]") && !Current.IsOperator(":")) stop = ParseExpression(allowConditional: true);
        if (SkipOperator(":") && !Current.IsOperator("]")) step = ParseExpression(allowConditional: true);
        Expect(TokenKind.Operator, "]", "to close the slice");
        return new SliceExpression(target, start, stop, step, open.Offset);
    }

    private ArgumentList ParseCallArguments()
    {
        Expect(TokenKind.Operator, "(", "to open the argument list");
        var positional = new List<Expression>();
        var keywords = new List<(string, Expression)>();
        Expression? starArguments = null, starKeywords = null;
        bool first = true;
        while (!Current.IsOperator(")"))
        {
            if (!first)
            {
                Expect(TokenKind.Operator, ",", "between arguments");
                if (Current.IsOperator(")")) break;
            }
            first = false;
            if (SkipOperator("**"))
            {
                starKeywords = ParseExpression(allowConditional: true);
            }
            else if (SkipOperator("*"))
            {
                starArguments = ParseExpression(allowConditional: true);
            }
            else if (Current.Kind == TokenKind.Name && Peek().IsOperator("="))
            {
                string name = Advance().Value;
                Advance();
                keywords.Add((name, ParseExpression(allowConditional: true)));
            }
            else
            {
                if (keywords.Count > 0) throw Error("positional argument follows keyword argument", Current);
                positional.Add(ParseExpression(allowConditional: true));
            }
        }
        Advance();
        return new ArgumentList(positional, keywords, starArguments, starKeywords);
    }

    private Expression ParseFiltersAndTests(Expression expression)
    {
        for (int links = 0; ; links++)
        {
            var token = Current;
            if (links > TemplateLimits.MaxNesting) throw Error($"more than {TemplateLimits.MaxNesting} filters and tests in one chain", token);
            if (token.IsOperator("|"))
            {
                Advance();
                expression = ParseFilterCall(expression);
            }
            else if (token.IsName("is"))
            {
                Advance();
                expression = ParseTest(expression, token);
            }
            else if (token.IsOperator("("))
            {
                expression = new CallExpression(expression, ParseCallArguments(), token.Offset);
            }
            else
            {
                return expression;
            }
        }
    }

    private string ParseDottedName(string context)
    {
        string name = Expect(TokenKind.Name, null, context).Value;
        while (Current.IsOperator(".") && Peek().Kind == TokenKind.Name)
        {
            Advance();
            name += "." + Advance().Value;
        }
        return name;
    }

    private FilterExpression ParseFilterCall(Expression target)
    {
        var nameToken = Current;
        string name = ParseDottedName("as the filter name after '|'");
        if (!TemplateFilters.TryGet(name, out var filter))
        {
            _unknownNames.Add((Error($"No filter named '{name}'.", nameToken), _softDepth > 0));
            filter = (_, _, _) => throw new TemplateException($"No filter named '{name}' found.");
        }
        var arguments = Current.IsOperator("(") ? ParseCallArguments() : ArgumentList.None;
        return new FilterExpression(target, name, filter, arguments, nameToken.Offset);
    }

    private TestExpression ParseTest(Expression target, TemplateToken isToken)
    {
        bool negated = SkipName("not");
        var nameToken = Current;
        string name = ParseDottedName("as the test name after 'is'");
        if (!TemplateTests.TryGet(name, out var test))
        {
            _unknownNames.Add((Error($"No test named '{name}'.", nameToken), _softDepth > 0));
            test = (_, _, _) => throw new TemplateException($"No test named '{name}' found.");
        }
        ArgumentList arguments = ArgumentList.None;
        var next = Current;
        if (next.IsOperator("("))
        {
            arguments = ParseCallArguments();
        }
        else if ((next.Kind is TokenKind.Name or TokenKind.String or TokenKind.Integer or TokenKind.Float
                  || next.IsOperator("[") || next.IsOperator("{"))
                 && !(next.Kind == TokenKind.Name && next.Value is "else" or "or" or "and"))
        {
            // `x is divisibleby 3`, `x is sameas false`: one argument without parentheses.
            var argument = ParsePostfix(ParsePrimary());
            arguments = new ArgumentList([argument], [], null, null);
        }
        return new TestExpression(target, name, test, arguments, negated, isToken.Offset);
    }
}
