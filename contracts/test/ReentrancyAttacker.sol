// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title ReentrancyAttacker: test-only contract that tries to re-enter its target.
/// @notice It acts as the machine or the supplier of a PartReplacement (forward() relays any
/// call), and when Ether arrives it calls the target again with `reentryData`, recording
/// whether that nested call succeeded and what it reverted with. Never deploy outside tests.
contract ReentrancyAttacker {
    address public target;
    bytes public reentryData;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bytes public reentryError;

    constructor(address target_) {
        target = target_;
    }

    /// @notice Point the attacker at a target deployed after it (the target names it).
    function setTarget(address target_) external {
        target = target_;
    }

    /// @notice Set the call made from receive() when the target pays out.
    function setReentry(bytes calldata data) external {
        reentryData = data;
    }

    /// @notice Relay a call to the target, with value, as this contract.
    function forward(bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {
        // Only one nested attempt: enough to show whether the guard holds.
        if (reentryData.length > 0 && reentryAttempts == 0) {
            reentryAttempts += 1;
            (bool ok, bytes memory ret) = target.call(reentryData);
            reentrySucceeded = ok;
            reentryError = ret;
        }
    }
}
