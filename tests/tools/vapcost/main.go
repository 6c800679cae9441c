// vapcost evaluates ValidatingAdmissionPolicies on objects exactly as kube-apiserver compiles and runs them
// (k8s.io/apiserver's admission CEL: the same environment, variables, cost tracker and budgets), and prints
// what the API server never shows: the runtime cost of each validation, and of each policy as a whole.
//
// Usage: vapcost POLICIES.yaml OBJECT.json...   (prints one JSON line per object and policy)
//
// Built by tests/tools/build_vapcost.py into ~/.cache/netpol-guard/vapcost/<key>/vapcost.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	celgo "github.com/google/cel-go/cel"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/admission/plugin/cel"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/cel/environment"
)

var variableRef = regexp.MustCompile(`variables\.([A-Za-z_][A-Za-z0-9_]*)`)

type variable struct{ name, expression string }

func (v *variable) GetExpression() string      { return v.expression }
func (v *variable) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.AnyType, celgo.DynType} }
func (v *variable) GetName() string            { return v.name }

type validation struct{ expression string }

func (v *validation) GetExpression() string      { return v.expression }
func (v *validation) ReturnTypes() []*celgo.Type { return []*celgo.Type{celgo.BoolType} }

// Result is one policy on one object.
type Result struct {
	Object      string           `json:"object"`
	Policy      string           `json:"policy"`
	Costs       []int64          `json:"costs"`       // each validation's own cost: what its per-call limit sees
	Variables   map[string]int64 `json:"variables"`   // each variable's own cost (variables have per-call limits too)
	Cost        int64            `json:"cost"`        // all validations together, as the API server runs them
	Seconds     float64          `json:"seconds"`     // wall time of that run
	Outcomes    []string         `json:"outcomes"`    // "true", "false" or "error: ..." per validation
	PolicyError string           `json:"policyError"` // an error that stopped the whole policy (e.g. its budget)
}

func readPolicies(path string) ([]admissionregistrationv1.ValidatingAdmissionPolicy, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(raw), 4096)
	var policies []admissionregistrationv1.ValidatingAdmissionPolicy
	for {
		var policy admissionregistrationv1.ValidatingAdmissionPolicy
		if err := decoder.Decode(&policy); err != nil {
			if errors.Is(err, io.EOF) {
				return policies, nil
			}
			return nil, err
		}
		if policy.Kind == "ValidatingAdmissionPolicy" {
			policies = append(policies, policy)
		}
	}
}

func evaluate(policy admissionregistrationv1.ValidatingAdmissionPolicy, versioned *admission.VersionedAttributes,
	admissionRequest *admissionv1.AdmissionRequest, namespace *corev1.Namespace) (Result, error) {
	compiler, err := cel.NewCompositedCompiler(environment.MustBaseEnvSet(environment.DefaultCompatibilityVersion()))
	if err != nil {
		return Result{}, err
	}
	// As the validating admission plugin compiles a policy (plugin/policy/validating/plugin.go).
	options := cel.OptionalVariableDeclarations{HasParams: policy.Spec.ParamKind != nil, HasAuthorizer: true}
	var variables []cel.NamedExpressionAccessor
	for _, v := range policy.Spec.Variables {
		variables = append(variables, &variable{v.Name, v.Expression})
	}
	compiler.CompileAndStoreVariables(variables, options, environment.StoredExpressions)
	var expressions []cel.ExpressionAccessor
	for _, v := range policy.Spec.Validations {
		expressions = append(expressions, &validation{v.Expression})
	}
	result := Result{Policy: policy.Name, Variables: map[string]int64{}}
	// A validation's cost as the policy budget sees it includes the variables it reads (each evaluated once,
	// lazily, by its own program); its per-call cost is that minus theirs.
	cost := func(expression string) (int64, error) {
		alone := compiler.CompileCondition([]cel.ExpressionAccessor{&validation{expression}}, options,
			environment.StoredExpressions)
		if errs := alone.CompilationErrors(); len(errs) > 0 {
			return 0, fmt.Errorf("%s: %v", policy.Name, errs)
		}
		_, remaining, err := alone.ForInput(context.Background(), versioned, admissionRequest,
			cel.OptionalVariableBindings{}, namespace, celconfig.RuntimeCELCostBudget)
		if err != nil || remaining < 0 {
			return -1, nil
		}
		return celconfig.RuntimeCELCostBudget - remaining, nil
	}
	expressionsOf := map[string]string{}
	for _, v := range policy.Spec.Variables {
		expressionsOf[v.Name] = v.Expression
	}
	reads := func(expression string) []string { // the variables an expression reads, transitively
		seen := map[string]bool{}
		var walk func(string)
		walk = func(text string) {
			for _, match := range variableRef.FindAllStringSubmatch(text, -1) {
				if name := match[1]; !seen[name] {
					seen[name] = true
					walk(expressionsOf[name])
				}
			}
		}
		walk(expression)
		names := make([]string, 0, len(seen))
		for name := range seen {
			names = append(names, name)
		}
		return names
	}
	known := map[string]int64{}
	readCost := func(names []string) (int64, error) {
		if len(names) == 0 {
			return 0, nil
		}
		sort.Strings(names)
		key := strings.Join(names, ",")
		if cost, found := known[key]; found {
			return cost, nil
		}
		list := "["
		for i, name := range names {
			if i > 0 {
				list += ", "
			}
			list += "dyn(variables." + name + ")"
		}
		base, err := cost("[true].size() > 0") // the wrapper's own cost
		if err != nil {
			return 0, err
		}
		total, err := cost(list + "].size() > 0")
		known[key] = total - base
		return total - base, err
	}
	for _, v := range policy.Spec.Variables {
		all, err := readCost(reads("variables." + v.Name))
		if err != nil {
			return Result{}, err
		}
		deps, err := readCost(reads(v.Expression))
		if err != nil {
			return Result{}, err
		}
		result.Variables[v.Name] = all - deps
	}
	for _, v := range policy.Spec.Validations {
		alone, err := cost(v.Expression)
		if err != nil {
			return Result{}, err
		}
		read, err := readCost(reads(v.Expression))
		if err != nil {
			return Result{}, err
		}
		if alone < 0 {
			result.Costs = append(result.Costs, -1)
		} else {
			result.Costs = append(result.Costs, alone-read)
		}
	}
	all := compiler.CompileCondition(expressions, options, environment.StoredExpressions)
	start := time.Now()
	evaluations, remaining, err := all.ForInput(context.Background(), versioned, admissionRequest,
		cel.OptionalVariableBindings{}, namespace, celconfig.RuntimeCELCostBudget)
	result.Seconds = time.Since(start).Seconds()
	result.Cost = celconfig.RuntimeCELCostBudget - remaining
	if err != nil {
		result.PolicyError = err.Error()
	}
	for _, evaluation := range evaluations {
		switch {
		case evaluation.Error != nil:
			result.Outcomes = append(result.Outcomes, "error: "+evaluation.Error.Error())
		case evaluation.EvalResult != nil:
			result.Outcomes = append(result.Outcomes, fmt.Sprint(evaluation.EvalResult.Value()))
		default:
			result.Outcomes = append(result.Outcomes, "not evaluated")
		}
	}
	return result, nil
}

func run(args []string) error {
	if len(args) < 2 {
		return errors.New("usage: vapcost POLICIES.yaml OBJECT.json...")
	}
	policies, err := readPolicies(args[0])
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	out := json.NewEncoder(os.Stdout)
	for _, path := range args[1:] {
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		object := &unstructured.Unstructured{}
		if err := object.UnmarshalJSON(raw); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		gvk := object.GroupVersionKind()
		gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: "networkpolicies"}
		attributes := admission.NewAttributesRecord(object, nil, gvk, object.GetNamespace(), object.GetName(), gvr,
			"", admission.Create, &metav1.CreateOptions{}, false, nil)
		versioned := &admission.VersionedAttributes{Attributes: attributes, VersionedKind: gvk, VersionedObject: object}
		request := cel.CreateAdmissionRequest(attributes, metav1.GroupVersionResource(gvr),
			metav1.GroupVersionKind(gvk))
		// The object's namespace as the API server passes it (namespaceObject): named, with its name label.
		namespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: object.GetNamespace(),
			Labels: map[string]string{"kubernetes.io/metadata.name": object.GetNamespace()}}}
		for _, policy := range policies {
			result, err := evaluate(policy, versioned, request, namespace)
			if err != nil {
				return err
			}
			result.Object = path
			if err := out.Encode(result); err != nil {
				return err
			}
		}
	}
	return nil
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "vapcost:", err)
		os.Exit(2)
	}
}
