// Errors raised by the library. Every rejected parameter or input names the parameter, the
// value it had and the rule it broke, so that a user can fix the call without reading code.
#pragma once

#include <stdexcept>
#include <string>

namespace lighthouse {

// A parameter or input broke a documented rule. The CLI maps this to exit code 2.
class InvalidArgument : public std::invalid_argument {
 public:
  InvalidArgument(std::string param, std::string value, std::string rule)
      : std::invalid_argument(param + " = " + value + ": " + rule),
        param_(std::move(param)),
        value_(std::move(value)),
        rule_(std::move(rule)) {}

  const std::string& param() const noexcept { return param_; }
  const std::string& value() const noexcept { return value_; }
  const std::string& rule() const noexcept { return rule_; }

 private:
  std::string param_, value_, rule_;
};

// A failure that is not the caller's fault in the parameters: I/O, a driver call, a backend
// that is not compiled in.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace lighthouse
