// Checks that a call is rejected with lighthouse::InvalidArgument whose message names the
// parameter, contains the offending value and states the rule.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>

#include "lighthouse/error.hpp"

namespace lhtest {

inline std::string lowercase(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

// `params`: the acceptable parameter names (usually one); `value`: a substring of the message
// that shows the offending value; `phrases`: the rule, any one of them (case-insensitive).
template <typename Call>
void expect_invalid(Call&& call, std::initializer_list<const char*> params,
                    const std::string& value, std::initializer_list<const char*> phrases) {
  try {
    call();
    ADD_FAILURE() << "accepted; expected InvalidArgument naming " << *params.begin();
  } catch (const lighthouse::InvalidArgument& e) {
    const std::string what = e.what();
    if (std::getenv("LIGHTHOUSE_SHOW_ERRORS")) std::printf("[ message  ] %s\n", what.c_str());
    EXPECT_TRUE(std::find(params.begin(), params.end(), e.param()) != params.end())
        << "param() is '" << e.param() << "', expected " << *params.begin()
        << "; message: " << what;
    EXPECT_NE(what.find(value), std::string::npos)
        << "the message does not show the value '" << value << "': " << what;
    const std::string lower = lowercase(what);
    EXPECT_TRUE(
        std::any_of(phrases.begin(), phrases.end(),
                    [&](const char* p) { return lower.find(lowercase(p)) != std::string::npos; }))
        << "the message does not state the rule (e.g. '" << *phrases.begin() << "'): " << what;
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw something other than InvalidArgument: " << e.what();
  }
}

}  // namespace lhtest
